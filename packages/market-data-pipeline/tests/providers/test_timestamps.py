from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from market_data_core.timestamps import to_ns
from market_data_pipeline.exceptions import RecordError
from market_data_pipeline.providers._timestamps import Pacer, parse_duration, to_utc_nanos

T = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
NS = to_ns(T)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6h30m", 23_400),
        ("1d", 86_400),
        ("90s", 90),
        ("250ms", 0.25),
        ("1h 15m", 4500),
        ("12.5", 12.5),
        (30, 30),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "6 hours", "h", "1x", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def convert(values: pa.Array, timezone: str | None = None, unit: str = "auto") -> list[int]:
    """The column as nanoseconds since the epoch (exact integers)."""
    lines = np.arange(2, 2 + len(values))
    out, _ = to_utc_nanos(
        values, source="f.csv", field="ts", lines=lines, timezone=timezone, unit=unit
    )
    assert out.type == pa.timestamp("ns", tz="UTC")
    return out.cast(pa.int64()).to_pylist()


def test_every_timestamp_representation_gives_the_same_instant() -> None:
    assert convert(pa.array(["2024-01-02T14:30:00Z"])) == [NS]
    assert convert(pa.array(["2024-01-02 15:30:00+01:00"])) == [NS]
    assert convert(pa.array(["2024-01-02 14:30:00"]), timezone="UTC") == [NS]
    assert convert(pa.array([T.replace(tzinfo=None)], pa.timestamp("ms")), timezone="UTC") == [NS]
    assert convert(pa.array([T], pa.timestamp("ns", tz="Europe/Paris"))) == [NS]
    assert convert(pa.array([1704205800.0])) == [NS]
    assert convert(pa.array([1704205800123]), unit="ms") == [NS + 123_000_000]
    assert convert(pa.array(["1704205800000000000"])) == [NS]


@pytest.mark.parametrize(
    ("values", "unit", "nanos"),
    [
        (pa.array(["2024-01-02T14:30:00.000000001Z"]), "auto", 1),
        (pa.array(["2024-01-02 15:30:00.123456789+01:00"]), "auto", 123_456_789),
        (pa.array(["2024-01-02 14:30:00.1234567"]), "auto", 123_456_700),
        (pa.array([1704205800123456789]), "ns", 123_456_789),
        (pa.array([1704205800123456789]), "auto", 123_456_789),
        (pa.array(["1704205800123456789"]), "ns", 123_456_789),
        (pa.array(["1704205800.123456789"]), "s", 123_456_789),
        (pa.array(["1704205800123.456789"]), "ms", 123_456_789),
        (pa.array(["1704205800123456.789"]), "auto", 123_456_789),
        (pa.array([T.replace(tzinfo=None)], pa.timestamp("us")), "auto", 0),
    ],
)
def test_nanoseconds_are_kept_exactly(values: pa.Array, unit: str, nanos: int) -> None:
    assert convert(values, timezone="UTC", unit=unit) == [NS + nanos]


def test_floats_are_read_to_the_microsecond_they_hold() -> None:
    # a float64 of a present-day epoch holds about a microsecond, never nanoseconds
    assert convert(pa.array([1704205800.123456])) == [NS + 123_456_000]


@pytest.mark.parametrize(
    ("values", "unit", "message"),
    [
        (pa.array(["2024-01-02T14:30:00Z", "2024-01-02T14:30:00.1234567891Z"]), "auto", "10 fra"),
        (pa.array(["1704205800", "1704205800.1234567891"]), "s", "more fractional digits"),
        (pa.array(["1704205800", "1704205800123456789.5"]), "ns", "more fractional digits"),
        (pa.array(["2024-01-02T14:30:00Z", "1500-01-01T00:00:00Z"]), "auto", "is outside"),
        (pa.array([1704205800, 10**12]), "s", "is outside"),
    ],
)
def test_what_nanoseconds_cannot_hold_is_an_error_naming_the_line(
    values: pa.Array, unit: str, message: str
) -> None:
    with pytest.raises(RecordError, match=message) as info:
        convert(values, unit=unit)
    assert (info.value.source, info.value.line, info.value.field) == ("f.csv", 3, "ts")


def test_nulls_stay_null_for_the_record_check_to_report() -> None:
    assert convert(pa.array(["2024-01-02T14:30:00Z", None])) == [NS, None]
    assert convert(pa.array([1704205800, None])) == [NS, None]
    assert convert(pa.array(["1704205800.5", None])) == [NS + 500_000_000, None]


def test_mixed_aware_and_naive_strings_name_the_first_odd_line() -> None:
    values = pa.array(["2024-01-02T14:30:00Z", "2024-01-02T14:30:01Z", "2024-01-02 14:30:02"])
    with pytest.raises(RecordError) as info:
        convert(values)
    assert (info.value.source, info.value.line, info.value.field) == ("f.csv", 4, "ts")


def test_an_ambiguous_local_time_is_an_error_naming_the_line() -> None:
    values = pa.array(["2024-11-03 00:30:00", "2024-11-03 01:30:00"])  # DST ends in New York
    with pytest.raises(RecordError, match="America/New_York") as info:
        convert(values, timezone="America/New_York")
    assert info.value.line == 3


@pytest.mark.asyncio
async def test_the_pacer_sleeps_until_a_position_is_due_and_re_anchors_after_a_pause() -> None:
    now = [0.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    await pacer.wait(0)  # anchors
    await pacer.wait(10)  # due 1 s later
    now[0] += 0.5  # work took half a second
    await pacer.wait(20)  # due at 2 s: half a second left
    now[0] += 60  # paused for a minute
    await pacer.wait(30)  # late: no burst, re-anchored
    await pacer.wait(40)
    assert sleeps == pytest.approx([1.0, 0.5, 1.0])

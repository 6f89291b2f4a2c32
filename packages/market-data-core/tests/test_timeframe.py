from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from market_data_core import Timeframe, TimeframeError
from market_data_core.testing.strategies import aware_datetimes, timeframes


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("1s", 1, "1s"),
        ("5m", 300, "5m"),
        ("60s", 60, "1m"),
        ("90s", 90, "90s"),
        ("1h", 3600, "1h"),
        ("240m", 14_400, "4h"),
        ("1d", 86_400, "1d"),
        ("24h", 86_400, "1d"),
    ],
)
def test_parse_and_canonical_text(text: str, seconds: int, canonical: str) -> None:
    tf = Timeframe.parse(text)
    assert tf.seconds == seconds
    assert str(tf) == canonical
    assert Timeframe.parse(str(tf)) == tf


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "invalid timeframe ''"),
        ("5", "invalid timeframe '5'"),
        ("m5", "invalid timeframe"),
        ("0m", "invalid timeframe"),
        ("5M", "lower case"),
        ("1w", "invalid timeframe"),
        ("-1m", "invalid timeframe"),
        ("7m", "does not divide one day"),
        ("2d", "does not divide one day"),
        (" 5m", "invalid timeframe"),
        ("1m\n", "invalid timeframe"),
    ],
)
def test_invalid_timeframes_explain_themselves(text: str, fragment: str) -> None:
    with pytest.raises(TimeframeError, match=fragment.replace("(", r"\(")):
        Timeframe.parse(text)


def test_non_string_is_rejected() -> None:
    with pytest.raises(TimeframeError, match="must be a string"):
        Timeframe.parse(300)


def test_ordering_equality_and_hash() -> None:
    assert Timeframe.parse("1m") < Timeframe.parse("5m") < Timeframe.parse("1d")
    assert len({Timeframe.parse("60s"), Timeframe.parse("1m")}) == 1
    assert Timeframe.parse("1m").divides(Timeframe.parse("5m"))
    assert not Timeframe.parse("2m").divides(Timeframe.parse("5m"))


@pytest.mark.parametrize(
    ("tf", "ts", "start"),
    [
        # month, year and leap-day edges in UTC
        (
            "1d",
            datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(2024, 1, 31, tzinfo=UTC),
        ),
        ("1d", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
        ("1d", datetime(2024, 2, 29, 12, tzinfo=UTC), datetime(2024, 2, 29, tzinfo=UTC)),
        ("1h", datetime(2023, 12, 31, 23, 30, tzinfo=UTC), datetime(2023, 12, 31, 23, tzinfo=UTC)),
        ("5m", datetime(2024, 3, 10, 2, 7, tzinfo=UTC), datetime(2024, 3, 10, 2, 5, tzinfo=UTC)),
        # a US DST change day is an ordinary day in UTC
        ("4h", datetime(2024, 11, 3, 6, 59, tzinfo=UTC), datetime(2024, 11, 3, 4, tzinfo=UTC)),
        # non-UTC input is floored as the same instant in UTC
        (
            "1d",
            datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))),
            datetime(2023, 12, 31, tzinfo=UTC),
        ),
        # before the epoch
        (
            "1m",
            datetime(1969, 12, 31, 23, 59, 30, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        ),
    ],
)
def test_floor_at_boundaries(tf: str, ts: datetime, start: datetime) -> None:
    floored = Timeframe.parse(tf).floor(ts)
    assert floored == start
    assert floored.tzinfo is UTC


def test_ceil_and_window() -> None:
    tf = Timeframe.parse("15m")
    ts = datetime(2024, 1, 31, 23, 50, tzinfo=UTC)
    assert tf.ceil(ts) == datetime(2024, 2, 1, tzinfo=UTC)
    assert tf.ceil(datetime(2024, 2, 1, tzinfo=UTC)) == datetime(2024, 2, 1, tzinfo=UTC)
    assert tf.window(ts) == (
        datetime(2024, 1, 31, 23, 45, tzinfo=UTC),
        datetime(2024, 2, 1, tzinfo=UTC),
    )


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(TimeframeError, match="naive"):
        Timeframe.parse("1m").floor(datetime(2024, 1, 1))


@given(timeframes, aware_datetimes())
def test_floor_contains_ts_and_is_aligned(tf: Timeframe, ts: datetime) -> None:
    start, end = tf.window(ts)
    assert start <= ts < end
    assert tf.is_aligned(start)
    assert tf.floor(start) == start
    assert end - start == tf.delta


@given(timeframes, aware_datetimes())
def test_floor_equals_pandas(tf: Timeframe, ts: datetime) -> None:
    expected = pd.Timestamp(ts).tz_convert("UTC").floor(tf.pandas_rule).to_pydatetime()
    assert tf.floor(ts) == expected


@given(st.sampled_from(["1s", "1m", "5m", "1h", "1d"]), aware_datetimes())
def test_pickle_and_pydantic_round_trip(text: str, ts: datetime) -> None:
    import pickle

    from pydantic import TypeAdapter

    tf = Timeframe.parse(text)
    assert pickle.loads(pickle.dumps(tf)) == tf
    adapter = TypeAdapter(Timeframe)
    assert adapter.validate_json(adapter.dump_json(tf)) == tf
    assert adapter.dump_json(tf) == f'"{text}"'.encode()

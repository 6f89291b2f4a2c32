"""Timestamps to the nanosecond: parsed, compared, serialised and converted exactly."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from market_data_core import (
    MIN_TIMESTAMP,
    NanoDatetime,
    Quote,
    RangeDatetime,
    Trade,
    UtcTimestamp,
    from_ns,
    parse_timestamp,
    to_ns,
)
from market_data_core.testing.strategies import nano_datetimes, trades

ADAPTER = TypeAdapter(UtcTimestamp)
NS_RANGE = st.integers(-(2**62), 2**62)


@given(NS_RANGE)
def test_nanoseconds_round_trip_through_a_datetime(nanos: int) -> None:
    value = from_ns(nanos)
    assert to_ns(value) == nanos
    assert value == pd.Timestamp(nanos, tz="UTC")  # pandas is the oracle


@given(NS_RANGE, NS_RANGE)
def test_order_and_equality_follow_the_nanoseconds(a: int, b: int) -> None:
    x, y = from_ns(a), from_ns(b)
    assert (x < y, x == y, x > y, x <= y, x >= y, x != y) == (
        a < b,
        a == b,
        a > b,
        a <= b,
        a >= b,
        a != b,
    )
    assert (x == y) == (hash(x) == hash(y)) or x != y
    assert sorted([x, y]) == [from_ns(n) for n in sorted([a, b])]


@given(NS_RANGE)
def test_a_plain_datetime_equals_the_same_instant_with_no_nanoseconds(nanos: int) -> None:
    value = from_ns(nanos // 1000 * 1000)
    plain = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)
    assert value == plain
    assert plain == value
    assert hash(value) == hash(plain)
    if nanos % 1000:
        assert from_ns(nanos) != plain
        assert plain < from_ns(nanos)
        assert from_ns(nanos) > plain


@given(nano_datetimes())
def test_iso_text_json_and_pickle_keep_the_nanoseconds(value: datetime) -> None:
    utc = value.astimezone(UTC)
    assert parse_timestamp(utc.isoformat()) == utc
    assert ADAPTER.validate_json(ADAPTER.dump_json(value)) == utc
    assert pickle.loads(pickle.dumps(utc)) == utc
    assert to_ns(value + timedelta(seconds=1)) == to_ns(value) + 1_000_000_000


def test_json_with_nine_digits_is_exact_and_more_is_refused() -> None:
    trade = Trade.model_validate_json(
        '{"symbol": "A", "ts": "2024-01-02T14:30:00.123456789Z", "price": 1, "size": 1}'
    )
    assert to_ns(trade.ts) == 1_704_205_800_123_456_789
    assert trade.model_dump_json().count(".123456789Z") == 1
    with pytest.raises(ValidationError, match="at most 9"):
        Trade.model_validate(
            {"symbol": "A", "ts": "2024-01-02T14:30:00.1234567891Z", "price": 1, "size": 1}
        )


def test_pandas_and_numpy_timestamps_keep_their_nanoseconds() -> None:
    stamp = pd.Timestamp("2024-01-02T14:30:00.123456789Z")
    assert to_ns(ADAPTER.validate_python(stamp)) == stamp.value
    assert to_ns(ADAPTER.validate_python(np.datetime64(stamp.value, "ns"))) == stamp.value


def test_an_offset_is_normalised_to_utc_with_the_nanoseconds() -> None:
    quote = Quote(symbol="A", ts="2024-01-02T15:30:00.000000001+01:00", bid=1, ask=2)
    assert quote.ts.tzinfo == UTC
    assert quote.ts == NanoDatetime(2024, 1, 2, 14, 30, tzinfo=UTC, nanosecond=1)


@given(trades())
def test_trades_round_trip_through_json(trade: Trade) -> None:
    assert Trade.model_validate_json(trade.model_dump_json()) == trade


def test_a_range_bound_keeps_its_nanoseconds_and_refuses_numbers() -> None:
    """``RangeDatetime`` (the query routes' start and end) is exact: a bound between two
    ticks of one microsecond falls where it is written."""
    bound = TypeAdapter(RangeDatetime)
    moment = bound.validate_python("2024-01-02T09:30:00.123456789-05:00")
    assert to_ns(moment) == to_ns(datetime(2024, 1, 2, 14, 30, tzinfo=UTC)) + 123_456_789
    assert moment.utcoffset() == timedelta(0)
    assert bound.validate_python("0001-01-01T00:00:00Z") == MIN_TIMESTAMP  # clamped
    for wrong in ("1700000000", 1700000000, "2024-01-02T14:30:00"):  # a number; naive
        with pytest.raises(ValidationError):
            bound.validate_python(wrong)

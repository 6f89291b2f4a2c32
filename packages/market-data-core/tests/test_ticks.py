from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from market_data_core import MAX_TIMESTAMP, MIN_TIMESTAMP, Trade, TradeSide
from market_data_core.testing import T0, make_quote, make_trade


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"price": float("nan")}, ["price", "finite number"]),
        ({"price": float("inf")}, ["price", "finite number"]),
        ({"size": -1}, ["size", "greater than or equal to 0"]),
        ({"size": float("nan")}, ["size"]),
        ({"ts": datetime(2024, 1, 2)}, ["ts", "timezone info"]),
        ({"ts": "2024-01-02T10:00:00"}, ["ts", "timezone info"]),
        ({"symbol": "a b"}, ["symbol", "pattern"]),
        ({"symbol": "-AAPL"}, ["symbol", "pattern"]),
        ({"side": "long"}, ["side", "'buy' or 'sell'"]),
        ({"conditions": ("",)}, ["conditions.0"]),
        ({"venue": "XNAS"}, ["venue", "Extra inputs are not permitted"]),
    ],
)
def test_invalid_trades_name_the_field(overrides: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        make_trade(**overrides)
    for name in names:
        assert name in str(excinfo.value)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"bid": 10.0, "ask": 9.0}, ["crossed quote: bid 10.0 is above ask 9.0"]),
        ({"bid": float("nan")}, ["bid", "finite number"]),
        ({"ask_size": -5}, ["ask_size"]),
        ({"ts": datetime(2024, 1, 2)}, ["ts", "timezone info"]),
    ],
)
def test_invalid_quotes_name_the_field(overrides: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        make_quote(**overrides)
    for name in names:
        assert name in str(excinfo.value)


def test_timestamps_from_other_offsets_become_utc() -> None:
    trade = make_trade(ts="2024-01-02T09:30:00-05:00")
    assert trade.ts == T0
    assert trade.ts.tzinfo is UTC
    trade = make_trade(ts=datetime(2024, 1, 2, 23, 30, tzinfo=timezone(timedelta(hours=9))))
    assert trade.ts == T0


def test_symbols_venues_use() -> None:
    for symbol in ["BTC/USDT", "6EH4.XCME", "ES=F", "^GSPC", "BRK.B", "EUR/USD:FX"]:
        assert make_trade(symbol=symbol).symbol == symbol


def test_quote_mid_and_spread() -> None:
    quote = make_quote(bid=100.0, ask=100.5)
    assert quote.mid == 100.25
    assert quote.spread == 0.5
    assert make_quote(bid=1.0, ask=1.0).spread == 0  # a locked book is valid


def test_trade_from_json_with_side_and_conditions() -> None:
    trade = Trade.model_validate_json(
        '{"symbol":"BTC/USDT","ts":"2021-01-08T00:00:00.123Z","price":40000.5,"size":0.01,'
        '"side":"sell","conditions":["I"],"trade_id":"1"}'
    )
    assert trade.side is TradeSide.SELL
    assert trade.ts == datetime(2021, 1, 8, 0, 0, 0, 123_000, tzinfo=UTC)
    assert trade.conditions == ("I",)


@pytest.mark.parametrize(
    "overrides",
    [
        {"exchange": "XN\x00AS"},
        {"conditions": ("@", "\x00")},
        {"trade_id": "12\x0034"},
        {"exchange": "X\ud800"},
    ],
)
def test_text_that_a_store_cannot_keep_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        make_trade(**overrides)
    field = next(iter(overrides))
    assert field in str(excinfo.value)
    assert "NUL character" in str(excinfo.value) or "lone surrogate" in str(excinfo.value)


def test_a_quote_exchange_with_nul_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"exchange[\s\S]*NUL character"):
        make_quote(exchange="IEX\x00")


_EDGES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: overflowed on the way to UTC
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:00:00-05:00",  # after year 9999 in UTC
    "1677-12-31T23:59:59.999999Z",
    "2262-01-01T00:00:00Z",
]


@pytest.mark.parametrize("ts", _EDGES)
def test_timestamps_out_of_range_are_validation_errors(ts: str) -> None:
    document = f'{{"symbol": "A", "ts": "{ts}", "price": 1, "size": 1}}'
    bounds = r"ts[\s\S]*(greater than or equal to 1678-01-01|less than 2262-01-01)"
    with pytest.raises(ValidationError, match=bounds):
        Trade.model_validate_json(document)
    with pytest.raises(ValidationError, match=bounds):
        make_trade(ts=ts)


def test_the_timestamp_range_is_inclusive_below_and_exclusive_above() -> None:
    assert make_trade(ts=MIN_TIMESTAMP).ts == MIN_TIMESTAMP
    last = MAX_TIMESTAMP - timedelta(microseconds=1)
    assert make_trade(ts=last.astimezone(timezone(timedelta(hours=-5)))).ts == last
    assert make_quote(ts=MIN_TIMESTAMP).ts == MIN_TIMESTAMP

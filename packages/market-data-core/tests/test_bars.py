from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from market_data_core import Bar, Timeframe
from market_data_core.testing import T0, make_bar


def _error_text(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as excinfo:
        make_bar(**overrides)
    return str(excinfo.value)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"open": float("nan")}, ["open", "finite number"]),
        ({"high": float("inf")}, ["high", "finite number"]),
        ({"close": float("-inf")}, ["close", "finite number"]),
        ({"vwap": float("nan")}, ["vwap", "finite number"]),
        ({"low": 186.0}, ["low (186.0) is above high (185.9)"]),
        ({"open": 190.0}, ["open (190.0) is outside [low, high]"]),
        ({"close": 100.0}, ["close (100.0) is outside [low, high]"]),
        ({"vwap": 200.0}, ["vwap (200.0) is outside [low, high]"]),
        ({"volume": -1.0}, ["volume", "greater than or equal to 0"]),
        ({"trade_count": -3}, ["trade_count", "greater than or equal to 0"]),
        ({"start": datetime(2024, 1, 2, 14, 30)}, ["start", "timezone info"]),
        (
            {"start": T0 + timedelta(seconds=7)},
            ["start (2024-01-02T14:30:07+00:00) is not aligned"],
        ),
        ({"symbol": ""}, ["symbol", "pattern"]),
        ({"symbol": "AA PL"}, ["symbol", "pattern"]),
        ({"symbol": "X" * 65}, ["symbol", "pattern"]),
        ({"timeframe": "7m"}, ["timeframe", "does not divide one day"]),
        ({"source": ""}, ["source"]),
        ({"colour": "red"}, ["colour", "Extra inputs are not permitted"]),
    ],
)
def test_invalid_bars_name_the_field(overrides: dict[str, Any], names: list[str]) -> None:
    text = _error_text(**overrides)
    for name in names:
        assert name in text


def test_valid_bar_and_its_key() -> None:
    bar = make_bar()
    assert bar.end == T0 + timedelta(minutes=1)
    assert bar.key == ("test", "AAPL", "1m", T0)


def test_start_is_normalised_to_utc() -> None:
    local = T0.astimezone(timezone(timedelta(hours=-5)))
    bar = make_bar(start=local)
    assert bar.start == T0
    assert bar.start.tzinfo is UTC


def test_timeframe_accepts_text_and_serialises_as_text() -> None:
    bar = make_bar(timeframe="5m")
    assert bar.timeframe == Timeframe.parse("5m")
    assert '"timeframe":"5m"' in bar.model_dump_json()
    assert bar.model_dump(mode="json")["timeframe"] == "5m"


def test_bars_without_volume_or_counts_are_valid() -> None:
    bar = Bar(
        source="fxcm",
        symbol="GBP/USD",
        timeframe="1m",
        start=T0,
        open=1.5,
        high=1.6,
        low=1.4,
        close=1.55,
    )
    assert bar.volume == 0.0
    assert bar.trade_count is None
    assert bar.vwap is None


def test_frozen() -> None:
    bar = make_bar()
    with pytest.raises(ValidationError, match="frozen"):
        bar.close = 1.0  # type: ignore[misc]


def test_negative_prices_are_allowed_for_spreads() -> None:
    bar = make_bar(symbol="CL-SPREAD", open=-2.0, high=-1.0, low=-3.0, close=-1.5, vwap=None)
    assert bar.low == -3.0

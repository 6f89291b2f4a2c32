from typing import Any

import pytest
from pydantic import ValidationError

from market_data_core import AssetClass, Instrument
from market_data_core.testing import make_signal


def test_instrument_defaults_and_validation() -> None:
    instrument = Instrument(
        symbol="6EH4",
        asset_class="future",
        venue="XCME",
        currency="USD",
        tick_size=0.00005,
        multiplier=125_000,
    )
    assert instrument.asset_class is AssetClass.FUTURE
    with pytest.raises(ValidationError, match="tick_size"):
        Instrument(symbol="X", asset_class="fx", tick_size=0)
    with pytest.raises(ValidationError, match="currency"):
        Instrument(symbol="X", asset_class="fx", currency="usd")
    with pytest.raises(ValidationError, match="asset_class"):
        Instrument(symbol="X", asset_class="bond-ish")


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"value": float("nan")}, ["value", "finite number"]),
        ({"score": float("inf")}, ["score", "finite number"]),
        ({"name": "has space"}, ["name", "pattern"]),
        ({"name": ""}, ["name"]),
        ({"metadata": {"k": [1, 2]}}, ["metadata.k"]),
        ({"metadata": {"k": float("nan")}}, ["metadata.k"]),
        ({"metadata": {"k": "a\x00b"}}, ["metadata.k", "NUL character"]),
        ({"metadata": {"k\x00": "v"}}, ["metadata.k\x00", "NUL character"]),
    ],
)
def test_invalid_signals_name_the_field(overrides: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        make_signal(**overrides)
    for name in names:
        assert name in str(excinfo.value)


def test_signal_metadata_keeps_scalars() -> None:
    signal = make_signal(
        metadata={"model": "ema", "window": 20, "alpha": 0.1, "live": True, "note": None}
    )
    again = type(signal).model_validate_json(signal.model_dump_json())
    assert again.metadata == {
        "model": "ema",
        "window": 20,
        "alpha": 0.1,
        "live": True,
        "note": None,
    }
    assert isinstance(again.metadata["window"], int)
    assert isinstance(again.metadata["live"], bool)

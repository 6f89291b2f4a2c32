"""Instruments: what a symbol refers to."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from market_data_core._base import InputModel
from market_data_core._types import Symbol

__all__ = ["AssetClass", "Instrument"]


class AssetClass(StrEnum):
    EQUITY = "equity"
    FUTURE = "future"
    OPTION = "option"
    FX = "fx"
    CRYPTO = "crypto"
    INDEX = "index"
    OTHER = "other"


class Instrument(InputModel):
    """A tradable instrument and the facts needed to interpret its prices and sizes."""

    symbol: Symbol
    asset_class: AssetClass
    venue: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3,5}$")] | None = Field(
        default=None, description="Quote currency (ISO 4217 or a crypto ticker such as USDT)."
    )
    tick_size: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    lot_size: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    multiplier: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    description: Annotated[str, StringConstraints(max_length=256)] | None = None

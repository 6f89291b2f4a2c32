"""Trades and quotes: the events providers emit."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import StringConstraints, model_validator

from market_data_core._base import InputModel
from market_data_core._types import FinitePrice, NonNegativeFinite, Symbol, Text, UtcDatetime

__all__ = ["Quote", "Trade", "TradeSide"]

_Venue = Annotated[Text, StringConstraints(min_length=1, max_length=32)]


class TradeSide(StrEnum):
    """The aggressor side, when the venue reports it."""

    BUY = "buy"
    SELL = "sell"


class Trade(InputModel):
    """One execution: ``size`` units at ``price``, at event time ``ts`` (UTC)."""

    symbol: Symbol
    ts: UtcDatetime
    price: FinitePrice
    size: NonNegativeFinite
    exchange: _Venue | None = None
    conditions: tuple[Annotated[Text, StringConstraints(min_length=1, max_length=16)], ...] = ()
    trade_id: Annotated[Text, StringConstraints(min_length=1, max_length=64)] | None = None
    side: TradeSide | None = None


class Quote(InputModel):
    """Top of book at event time ``ts`` (UTC). A crossed book (bid > ask) is rejected."""

    symbol: Symbol
    ts: UtcDatetime
    bid: FinitePrice
    ask: FinitePrice
    bid_size: NonNegativeFinite = 0.0
    ask_size: NonNegativeFinite = 0.0
    exchange: _Venue | None = None

    @model_validator(mode="after")
    def _not_crossed(self) -> Self:
        if self.bid > self.ask:
            msg = f"crossed quote: bid {self.bid} is above ask {self.ask}"
            raise ValueError(msg)
        return self

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> float:
        return self.ask - self.bid

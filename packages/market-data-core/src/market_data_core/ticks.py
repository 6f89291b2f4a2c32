"""Trades and quotes: the events providers emit."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from market_data_core._base import InputModel
from market_data_core._types import FinitePrice, NonNegativeFinite, Symbol, Text
from market_data_core._versioned import AsOf, Revision, WhyWritten
from market_data_core.timestamps import UtcTimestamp

__all__ = ["Quote", "Trade", "TradeSide"]

_Venue = Annotated[Text, StringConstraints(min_length=1, max_length=32)]
_Ordinal = Annotated[int, Field(ge=0, le=2**31 - 1)]
_ORDINAL = (
    "Tells apart ticks of one source with the same symbol, ts and exchange and no venue id "
    "(trade_id, sequence): 0, 1, 2... in the order the source gave them. Absent: assigned "
    "where the ticks enter (a provider, an ingest request)."
)


class TradeSide(StrEnum):
    """The aggressor side, when the venue reports it."""

    BUY = "buy"
    SELL = "sell"


class Trade(InputModel):
    """One execution: ``size`` units at ``price``, at event time ``ts`` (UTC, to the
    nanosecond).

    Its key is ``(symbol, ts, exchange, trade_id, ordinal)``: the venue's trade id where the
    feed has one, else the ordinal among ticks of one source at the same instant."""

    symbol: Symbol
    ts: UtcTimestamp
    price: FinitePrice
    size: NonNegativeFinite
    exchange: _Venue | None = None
    conditions: tuple[Annotated[Text, StringConstraints(min_length=1, max_length=16)], ...] = ()
    trade_id: Annotated[Text, StringConstraints(min_length=1, max_length=64)] | None = None
    side: TradeSide | None = None
    received_at: UtcTimestamp | None = Field(
        default=None, description="When the feed received the trade (e.g. Databento ts_recv)."
    )
    ordinal: _Ordinal | None = Field(default=None, description=_ORDINAL)
    as_of: AsOf = None
    revision: Revision = 0
    reason: WhyWritten = None


class Quote(InputModel):
    """Top of book at event time ``ts`` (UTC, to the nanosecond). A crossed book (bid >
    ask) is rejected.

    Its key is ``(symbol, ts, exchange, sequence, ordinal)``: the venue's sequence number
    where the feed has one, else the ordinal among quotes of one source at the same
    instant."""

    symbol: Symbol
    ts: UtcTimestamp
    bid: FinitePrice
    ask: FinitePrice
    bid_size: NonNegativeFinite = 0.0
    ask_size: NonNegativeFinite = 0.0
    exchange: _Venue | None = None
    sequence: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = Field(
        default=None, description="The venue's sequence number of the update."
    )
    received_at: UtcTimestamp | None = Field(
        default=None, description="When the feed received the quote (e.g. Databento ts_recv)."
    )
    ordinal: _Ordinal | None = Field(default=None, description=_ORDINAL)
    as_of: AsOf = None
    revision: Revision = 0
    reason: WhyWritten = None

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

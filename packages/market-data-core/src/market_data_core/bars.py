"""OHLCV bars."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import Field, model_validator

from market_data_core._base import InputModel
from market_data_core._types import (
    FinitePrice,
    Identifier,
    NonNegativeFinite,
    Symbol,
    UtcDatetime,
)
from market_data_core._versioned import AsOf, Revision, WhyWritten
from market_data_core.timeframe import Timeframe

__all__ = ["Bar"]


class Bar(InputModel):
    """An OHLCV bar of ``timeframe`` starting at ``start`` (UTC, window start, inclusive).

    Its key is ``(source, symbol, timeframe, start)``. ``start`` must be aligned to the
    timeframe, ``low <= open, close <= high``, and ``vwap`` (when known) within
    ``[low, high]``. ``trade_count`` is ``None`` when the source does not report it.

    A resampler's bar has ``revision`` = the input records it has seen, so every revision
    of a bar outranks the one before and a replay of the same input changes nothing.
    """

    source: Identifier = Field(description="Who produced the bar: a provider or pipeline name.")
    symbol: Symbol
    timeframe: Timeframe
    start: UtcDatetime
    open: FinitePrice
    high: FinitePrice
    low: FinitePrice
    close: FinitePrice
    volume: NonNegativeFinite = 0.0
    trade_count: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None  # a SQL BIGINT
    vwap: FinitePrice | None = None
    as_of: AsOf = None
    revision: Revision = 0
    reason: WhyWritten = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.low > self.high:
            msg = f"low ({self.low}) is above high ({self.high})"
            raise ValueError(msg)
        for name in ("open", "close", "vwap"):
            value = getattr(self, name)
            if value is not None and not self.low <= value <= self.high:
                msg = f"{name} ({value}) is outside [low, high] = [{self.low}, {self.high}]"
                raise ValueError(msg)
        if not self.timeframe.is_aligned(self.start):
            msg = (
                f"start ({self.start.isoformat()}) is not aligned to timeframe "
                f"{self.timeframe}; expected {self.timeframe.floor(self.start).isoformat()}"
            )
            raise ValueError(msg)
        return self

    @property
    def end(self) -> datetime:
        """End of the bar's window (exclusive)."""
        return self.start + self.timeframe.delta

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        """The identity under which stores upsert the bar."""
        return (self.source, self.symbol, str(self.timeframe), self.start)

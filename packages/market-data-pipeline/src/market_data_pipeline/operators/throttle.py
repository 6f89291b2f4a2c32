"""``throttle``: hold a stream to ``rate`` rows per second with a token bucket. Never drops.

The bucket holds up to ``burst`` tokens (default: one second's worth, at least 1) and starts
full; one row costs one token, and tokens come back at ``rate`` per second. A batch goes out
in pieces of at most ``floor(burst)`` rows; before each piece the throttle sleeps until the
bucket holds enough tokens for all of it, so over any interval of ``T`` seconds at most
``burst + rate * T`` rows go out, in batches as large as the burst allows.

The clock and the sleep are attributes (``time.monotonic`` and ``asyncio.sleep``) that tests
replace to check the schedule without waiting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from market_data_pipeline.components import Emit, Operator, Params

__all__ = ["Throttle", "ThrottleParams"]

_SLACK = 1e-9
"""Relative tolerance on the token count (float rounding after a sleep)."""


class ThrottleParams(Params):
    rate: float = Field(gt=0, allow_inf_nan=False)
    """Rows per second."""
    burst: float | None = Field(default=None, ge=1, allow_inf_nan=False)
    """Rows that may go out at once after a pause (default ``max(rate, 1)``)."""


class Throttle(Operator[ThrottleParams]):
    """Splits and delays batches so that at most ``rate`` rows per second go out."""

    Params = ThrottleParams
    description: ClassVar[str] = "Limit the rows per second (token bucket); never drops."

    def __init__(self, node_id: str, params: ThrottleParams) -> None:
        super().__init__(node_id, params)
        self.rate = params.rate
        self.burst = params.burst if params.burst is not None else max(params.rate, 1.0)
        self.piece = math.floor(self.burst)
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._tokens = self.burst
        self._last: float | None = None

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        offset = 0
        while offset < batch.num_rows:
            rows = min(self.piece, batch.num_rows - offset)
            await self._acquire(rows)
            await emit(batch.slice(offset, rows))
            offset += rows

    async def _acquire(self, rows: int) -> None:
        """Wait until the bucket holds ``rows`` tokens, then take them."""
        self._refill()
        missing = rows - self._tokens
        if missing > _SLACK * self.burst:
            await self.sleep(missing / self.rate)
            self._refill()
        self._tokens -= rows

    def _refill(self) -> None:
        now = self.clock()
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

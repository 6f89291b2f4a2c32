"""A seeded random walk of trades or quotes: the provider of the quickstart and benchmarks.

The data depend only on the params (never on the wall clock, nor on ``batch_size``): events
are generated in fixed chunks, each from its own ``numpy`` generator seeded with
``(seed, chunk)``, so a second run emits the same rows and the store's idempotent upsert
makes it a no-op. Event ``i`` of ``N`` falls at ``start + (i + u) * duration / N`` (``u``
uniform in [0, 1)), to the nanosecond, so timestamps are ordered and strictly inside
``[start, start + duration)``. Prices follow a geometric random walk per symbol and stay
positive.

It simulates a feed whose receive time is the event time: every record's ``as_of`` (its
version time) is its ``ts``, so versions are as deterministic as the data. Quotes have no
venue sequence: each gets its ``ordinal`` among quotes of the same symbol and instant
(:class:`~market_data_core.columns.Ordinals`, independent of ``batch_size``); trades have a
trade id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import (
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from market_data_core import Symbol
from market_data_core.columns import Ordinals
from market_data_core.timestamps import UtcTimestamp, to_ns
from market_data_pipeline import records
from market_data_pipeline.components import Extent, Params, Provider
from market_data_pipeline.providers._timestamps import (
    Clock,
    Pacer,
    Sleep,
    parse_duration,
    stoppable_sleep,
)

__all__ = ["SyntheticParams", "SyntheticProvider"]

_CHUNK: Final = 8192
"""Events per generator chunk: fixed, so the data do not depend on ``batch_size``."""
_DAY_SECONDS: Final = 86400.0
_TICK: Final = 0.01
_PRICE_STREAM: Final = 2**32
"""Generator key of the initial prices (chunk keys are below it)."""
_NS: Final = 1_000_000_000

_SYMBOLS: Final = TypeAdapter(list[Symbol])

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class SyntheticParams(Params):
    kind: Literal["trades", "quotes"] = "trades"
    symbols: int | list[str] = Field(default=3, description="A count (SYM000...) or names.")
    seed: int = Field(default=42, ge=0)
    start: UtcTimestamp = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    duration: Duration = Field(
        default=timedelta(hours=6, minutes=30), description="Event-time span: '6h30m' or s."
    )
    events_per_second: float | None = Field(
        default=None, gt=0, description="Events per symbol per second of event time (default 1)."
    )
    count: int | None = Field(default=None, ge=0, description="Total events (all symbols).")
    batch_size: int = Field(default=10_000, ge=1)
    rate: float | None = Field(
        default=None, gt=0, description="Records per wall-clock second; None: as fast as possible."
    )
    price: float | None = Field(
        default=None, gt=0, description="Initial price of every symbol (default: seeded 20..500)."
    )
    volatility: float = Field(default=0.02, ge=0, description="Std of log returns per day.")
    spread_bps: float = Field(default=2.0, ge=0, description="Quoted spread in basis points.")

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: int | list[str]) -> int | list[str]:
        if isinstance(value, int) and value < 1:
            msg = "symbols must be >= 1"
            raise ValueError(msg)
        if isinstance(value, list):
            if not value:
                msg = "symbols must not be empty"
                raise ValueError(msg)
            if len(set(value)) != len(value):
                msg = "symbols must be unique"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _count_or_rate(self) -> SyntheticParams:
        if self.count is not None and self.events_per_second is not None:
            msg = "give either count or events_per_second, not both"
            raise ValueError(msg)
        if self.duration <= timedelta(0):
            msg = "duration must be positive"
            raise ValueError(msg)
        return self

    def names(self) -> list[str]:
        if isinstance(self.symbols, list):
            return list(self.symbols)
        width = max(3, len(str(self.symbols - 1)))
        return [f"SYM{i:0{width}d}" for i in range(self.symbols)]

    def total(self) -> int:
        if self.count is not None:
            return self.count
        per_second = self.events_per_second or 1.0
        return round(per_second * self.duration.total_seconds() * len(self.names()))


class SyntheticProvider(Provider[SyntheticParams]):
    """Seeded random-walk trades or quotes (deterministic: a rerun emits the same data)."""

    Params = SyntheticParams
    description: ClassVar[str] = "Seeded random-walk trades or quotes (deterministic)."

    def __init__(self, node_id: str, params: SyntheticParams) -> None:
        super().__init__(node_id, params)
        self.symbols = params.names()
        _check_symbols(self.symbols)
        self.total = params.total()
        self.clock: Clock = time.monotonic
        """Wall clock of the ``rate`` pacing (tests replace it)."""
        self.sleep: Sleep | None = None
        """Sleep of the ``rate`` pacing (default: one that wakes up when the job stops)."""

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        return records.schema_of(self.params.kind)

    def extent(self) -> Extent:
        """The rows emitted so far of the configured total (``count``, or the events per
        second over the duration)."""
        done = self.ctx.stats.items_out if self.ctx is not None else 0
        return Extent(min(done, self.total), self.total)

    async def batches(self) -> AsyncIterator[pa.Table]:
        pacer = self._pacer()
        emitted = 0
        for batch in self.tables():
            if pacer is not None:
                await pacer.wait(emitted)
            emitted += batch.num_rows
            yield batch
            await asyncio.sleep(0)  # let the rest of the loop run between batches

    def _pacer(self) -> Pacer | None:
        if self.params.rate is None:
            return None
        ctx = self.context
        sleep = self.sleep or (lambda s: stoppable_sleep(s, ctx.stopping))
        return Pacer(self.params.rate, clock=self.clock, sleep=sleep)

    def tables(self) -> Iterator[pa.Table]:
        """Every batch, in order (synchronous: the data without the pacing)."""
        pending: list[pa.Table] = []
        rows = 0
        size = self.params.batch_size
        ordinals = Ordinals()  # one per run of the feed: a rerun gives the same ordinals
        kind = records.Kind(self.params.kind)
        for chunk in self._chunks():
            pending.append(ordinals.assign(chunk, kind))
            rows += chunk.num_rows
            while rows >= size:
                table = pa.concat_tables(pending)
                yield table.slice(0, size)
                rest = table.slice(size)
                pending, rows = ([rest] if rest.num_rows else []), rest.num_rows
        if rows:
            yield pa.concat_tables(pending)

    def _chunks(self) -> Iterator[pa.Table]:
        walk = _Walk(self.params, len(self.symbols))
        for first in range(0, self.total, _CHUNK):
            yield self._chunk(walk, first, min(first + _CHUNK, self.total))

    def _chunk(self, walk: _Walk, first: int, end: int) -> pa.Table:
        p = self.params
        rng = np.random.default_rng([p.seed, first // _CHUNK])
        n = end - first
        index = np.arange(first, end, dtype=np.float64)
        span_ns = p.duration // timedelta(microseconds=1) * 1000
        offsets = np.floor((index + rng.random(n)) * (span_ns / self.total)).astype(np.int64)
        ts = pa.array(to_ns(p.start) + np.minimum(offsets, span_ns - 1), type=records.TIMESTAMP)
        sym = rng.integers(0, len(self.symbols), n)
        symbol = pc.take(pa.array(self.symbols, pa.string()), pa.array(sym))
        price = walk.step(sym, rng.standard_normal(n))
        if p.kind == "trades":
            return _trades(symbol, ts, price, rng, first)
        return _quotes(symbol, ts, price, rng, p.spread_bps)


def _check_symbols(symbols: list[str]) -> None:
    try:
        _SYMBOLS.validate_python(symbols)
    except ValidationError as error:
        bad = symbols[int(error.errors()[0]["loc"][0])]
        msg = f"symbol {bad!r} is not a valid symbol (letters, digits and ._:/=^+-)"
        raise ValueError(msg) from None


class _Walk:
    """Log prices per symbol, carried from chunk to chunk."""

    def __init__(self, params: SyntheticParams, symbols: int) -> None:
        if params.price is not None:
            initial = np.full(symbols, params.price)
        else:
            rng = np.random.default_rng([params.seed, _PRICE_STREAM])
            initial = np.round(rng.uniform(20.0, 500.0, symbols), 2)
        self.log_price = np.log(initial)
        total = max(params.total(), 1)
        gap = params.duration.total_seconds() * symbols / total
        self.sigma = params.volatility * np.sqrt(gap / _DAY_SECONDS)

    def step(
        self, sym: npt.NDArray[np.int64], z: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Prices after each event: a per-symbol cumulative sum of the returns, vectorized."""
        order = np.argsort(sym, kind="stable")
        s, r = sym[order], z[order] * self.sigma
        total = np.cumsum(r)
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        lengths = np.diff(np.r_[starts, len(s)])
        before = np.repeat(total[starts] - r[starts], lengths)
        log_price = self.log_price[s] + (total - before)
        ends = starts + lengths - 1
        self.log_price[s[ends]] = log_price[ends]
        out = np.empty_like(log_price)
        out[order] = log_price
        result: npt.NDArray[np.float64] = np.exp(out)
        return result


def _ticks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    rounded: npt.NDArray[np.float64] = np.maximum(np.round(values / _TICK) * _TICK, _TICK)
    return np.round(rounded, 2)


def _trades(
    symbol: pa.Array,
    ts: pa.Array,
    price: npt.NDArray[np.float64],
    rng: np.random.Generator,
    first: int,
) -> pa.Table:
    n = len(price)
    sides = pc.take(pa.array(["buy", "sell"]), pa.array(rng.integers(0, 2, n)))
    trade_id = pc.cast(pa.array(np.arange(first, first + n)), pa.string())
    columns = {
        "symbol": symbol,
        "ts": ts,
        "price": pa.array(_ticks(price)),
        "size": pa.array(rng.integers(1, 500, n).astype(np.float64)),
        "exchange": pa.nulls(n, pa.string()),
        "trade_id": trade_id,
        "side": sides,
        "conditions": pa.nulls(n, pa.list_(pa.string())),
        **_received(ts, n),
    }
    return pa.table(columns, schema=records.TRADES)


def _quotes(
    symbol: pa.Array,
    ts: pa.Array,
    mid: npt.NDArray[np.float64],
    rng: np.random.Generator,
    spread_bps: float,
) -> pa.Table:
    n = len(mid)
    half = np.maximum(mid * spread_bps / 2e4, _TICK / 2)
    bid = _ticks(mid - half)
    ask = np.maximum(_ticks(mid + half), np.round(bid + _TICK, 2))
    columns = {
        "symbol": symbol,
        "ts": ts,
        "bid": pa.array(bid),
        "ask": pa.array(ask),
        "bid_size": pa.array(rng.integers(1, 50, n).astype(np.float64) * 100),
        "ask_size": pa.array(rng.integers(1, 50, n).astype(np.float64) * 100),
        "exchange": pa.nulls(n, pa.string()),
        "sequence": pa.nulls(n, pa.int64()),
        **_received(ts, n),
    }
    return pa.table(columns, schema=records.QUOTES)


def _received(ts: pa.Array, n: int) -> dict[str, pa.Array]:
    """A simulated feed receives each tick at its event time: that is the version time."""
    return {
        "received_at": pa.nulls(n, records.TIMESTAMP),
        "ordinal": pa.nulls(n, pa.int64()),
        "as_of": ts,
        "revision": pa.repeat(pa.scalar(0, pa.int64()), n),
        "reason": pa.nulls(n, pa.string()),
    }

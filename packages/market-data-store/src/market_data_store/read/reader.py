"""The read API: open a store by URL, ask for a kind, get pandas, polars or Arrow.

>>> import market_data_store as mds
>>> store = mds.connect("market_data.db")          # or postgresql://..., http://host:8000
>>> bars = store.bars(None, "5m", "2024-01-02", "2024-01-03").to_pandas()   # every symbol
>>> trades = store.trades(["BTCUSDT"], as_known_at="2024-01-03T00:00Z").to_polars()
>>> for batch in store.trades().batches(): ...    # any size, in bounded memory

``connect`` gives a ``Reader`` (blocking calls); ``connect_async`` an ``AsyncReader`` with
the same methods, whose results are awaited (``await store.bars(...).to_pandas()``,
``async for batch in store.trades().batches()``). A ``Selection`` is a read not yet run:
each ``to_*`` runs it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pyarrow as pa

from market_data_core.columns import SCHEMAS, Kind
from market_data_core.timestamps import from_ns
from market_data_store.exceptions import ReadError
from market_data_store.read.asof import asof_join
from market_data_store.read.query import ReadQuery, TimeBound, check_known_at
from market_data_store.read.sources import HttpSource, Source, open_source

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = ["AsyncReader", "AsyncSelection", "Reader", "Selection", "connect", "connect_async"]

Symbols = str | Iterable[str] | None
"""One symbol, several, or ``None``: every symbol in the store."""


def connect(
    url: str | Path,
    *,
    token: str | None = None,
    timeout: float = 30.0,
    history_retention_days: float | None = None,
) -> Reader:
    """A reader of the store at ``url``: a path to an SQLite file, ``sqlite:///path``,
    ``postgresql://user:password@host/db`` or the store service's ``http://host:port``
    (``token``: its bearer token, if it asks for one).

    ``as_known_at`` reads older than the history the store keeps fail rather than give
    a history with holes: ``history_retention_days`` is the store's
    ``MDS_HISTORY_RETENTION_DAYS`` (by default read from the environment, else 30; the
    service checks its own)."""
    return Reader(open_source(url, token=token, timeout=timeout), history_retention_days)


def connect_async(
    url: str | Path,
    *,
    token: str | None = None,
    timeout: float = 30.0,
    history_retention_days: float | None = None,
) -> AsyncReader:
    """``connect``, for asyncio code: the same methods, awaited."""
    return AsyncReader(open_source(url, token=token, timeout=timeout), history_retention_days)


def _retention(source: Source, days: float | None) -> float | None:
    """The history a direct reader checks ``as_known_at`` against (none over HTTP: the
    service checks its own). Asked for only by a read with ``as_known_at``, so that other
    reads do not import the settings."""
    if isinstance(source, HttpSource):
        return None
    if days is not None:
        return days
    text = os.environ.get("MDS_HISTORY_RETENTION_DAYS")
    try:
        if text:
            return float(text)
    except ValueError:
        msg = f"MDS_HISTORY_RETENTION_DAYS={text!r} is not a number of days"
        raise ReadError(msg) from None
    from market_data_store.settings import StoreSettings  # noqa: PLC0415

    return float(StoreSettings.model_fields["history_retention_days"].default)


def _pandas() -> Any:
    try:
        import pandas  # noqa: PLC0415
    except ImportError:
        msg = "to_pandas needs pandas: pip install pandas"
        raise ImportError(msg) from None
    return pandas


def _polars() -> Any:
    try:
        import polars  # noqa: PLC0415
    except ImportError:
        msg = "to_polars needs polars: pip install 'market-data-store[polars]'"
        raise ImportError(msg) from None
    return polars


def _table(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches(list(batches), schema=schema)


@dataclass(frozen=True, slots=True)
class _Join:
    """The right side of an as-of join and how to join it."""

    right: Selection | AsyncSelection
    by: str | None
    tolerance: timedelta | None
    suffix: str


@dataclass(frozen=True, slots=True)
class Selection:
    """A read not yet run: ``to_arrow``, ``to_pandas``, ``to_polars`` run it whole;
    ``batches`` and ``reader`` stream it."""

    source: Source
    query: ReadQuery
    join: _Join | None = None

    @property
    def schema(self) -> pa.Schema:
        return SCHEMAS[self.query.kind]

    def batches(self) -> Generator[pa.RecordBatch, None, None]:
        """The rows, a batch at a time, in bounded memory (no as-of join: use ``to_arrow``)."""
        if self.join is not None:
            yield from self.to_arrow().to_batches()
            return
        yield from self.source.batches(self.query)

    def reader(self) -> pa.RecordBatchReader:
        """The rows as an Arrow stream (for DuckDB, ``pyarrow.dataset``, Parquet writers)."""
        if self.join is not None:  # a join is whole: read and joined once
            table = self.to_arrow()
            return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def to_arrow(self) -> pa.Table:
        table = _table(self.source.batches(self.query), self.schema)
        if self.join is None:
            return table
        right = self.join.right
        assert isinstance(right, Selection)
        return _joined(self, table, right.to_arrow())

    def to_pandas(self) -> pd.DataFrame:
        _pandas()
        frame: pd.DataFrame = self.to_arrow().to_pandas()
        return frame

    def to_polars(self) -> pl.DataFrame:
        frame: pl.DataFrame = _polars().from_arrow(self.to_arrow())
        return frame

    def asof(
        self,
        other: Selection,
        *,
        by: str | None = "symbol",
        tolerance: timedelta | None = None,
        suffix: str = "_right",
    ) -> Selection:
        """Each row of this read with the latest row of ``other`` at its time (see
        ``asof_join``): ``store.trades(...).asof(store.quotes(...), suffix="_quote")``."""
        return Selection(self.source, self.query, _Join(other, by, tolerance, suffix))


def _joined(left: Selection | AsyncSelection, table: pa.Table, right: pa.Table) -> pa.Table:
    join = left.join
    assert join is not None
    left_time = "start" if left.query.kind is Kind.BARS else "ts"
    right_time = "start" if join.right.query.kind is Kind.BARS else "ts"
    return asof_join(
        table, right, on=left_time, right_on=right_time, by=join.by,
        tolerance=join.tolerance, suffix=join.suffix,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AsyncSelection:
    """``Selection`` for asyncio: the database's work runs in a thread, the loop stays free."""

    source: Source
    query: ReadQuery
    join: _Join | None = None

    @property
    def schema(self) -> pa.Schema:
        return SCHEMAS[self.query.kind]

    def _sync(self) -> Selection:
        join = self.join
        if join is not None and isinstance(join.right, AsyncSelection):
            join = _Join(join.right._sync(), join.by, join.tolerance, join.suffix)
        return Selection(self.source, self.query, join)

    async def batches(self) -> AsyncIterator[pa.RecordBatch]:
        iterator = self._sync().batches()
        try:
            while (batch := await asyncio.to_thread(next, iterator, None)) is not None:
                yield batch
        finally:
            await asyncio.to_thread(iterator.close)

    async def to_arrow(self) -> pa.Table:
        return await asyncio.to_thread(self._sync().to_arrow)

    async def to_pandas(self) -> pd.DataFrame:
        return await asyncio.to_thread(self._sync().to_pandas)

    async def to_polars(self) -> pl.DataFrame:
        return await asyncio.to_thread(self._sync().to_polars)

    def asof(
        self,
        other: AsyncSelection,
        *,
        by: str | None = "symbol",
        tolerance: timedelta | None = None,
        suffix: str = "_right",
    ) -> AsyncSelection:
        return AsyncSelection(self.source, self.query, _Join(other, by, tolerance, suffix))


S = TypeVar("S", Selection, AsyncSelection)


class _Reads(Generic[S]):
    """The read methods, shared by ``Reader`` and ``AsyncReader`` (``_select`` differs)."""

    def __init__(self, source: Source, retention_days: float | None = None) -> None:
        self.source = source
        self.retention_days = retention_days

    def _select(self, query: ReadQuery) -> S:
        raise NotImplementedError

    def _checked(self, query: ReadQuery) -> ReadQuery:
        if query.known_ns is None:
            return query
        days = _retention(self.source, self.retention_days)
        if days is not None:
            check_known_at(from_ns(query.known_ns), days)
        return query

    def bars(
        self,
        symbols: Symbols,
        timeframe: str,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        source: str | None = None,
        as_known_at: TimeBound = None,
    ) -> S:
        """Bars of ``timeframe`` (``"5m"``) of ``symbols`` starting in [start, end)."""
        return self._select(
            ReadQuery.of(Kind.BARS, symbols, start, end, timeframe=timeframe, source=source,
                         as_known_at=as_known_at)
        )  # fmt: skip

    def trades(
        self,
        symbols: Symbols = None,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        as_known_at: TimeBound = None,
    ) -> S:
        """Trades of ``symbols`` in [start, end), to the nanosecond."""
        return self._select(ReadQuery.of(Kind.TRADES, symbols, start, end, as_known_at=as_known_at))

    def quotes(
        self,
        symbols: Symbols = None,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        as_known_at: TimeBound = None,
    ) -> S:
        """Quotes of ``symbols`` in [start, end), to the nanosecond."""
        return self._select(ReadQuery.of(Kind.QUOTES, symbols, start, end, as_known_at=as_known_at))

    def read(
        self,
        kind: Kind | str,
        symbols: Symbols = None,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        timeframe: str | None = None,
        source: str | None = None,
        as_known_at: TimeBound = None,
    ) -> S:
        """Any kind by name: ``read("bars", ..., timeframe="5m")`` is ``bars(...)``."""
        return self._select(
            ReadQuery.of(kind, symbols, start, end, timeframe=timeframe, source=source,
                         as_known_at=as_known_at)
        )  # fmt: skip

    def close(self) -> None:
        """Let go of the source's connection (the HTTP client's; the databases' are per read)."""
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source.describe()!r})"


class Reader(_Reads[Selection]):
    """Blocking reads of one store (``connect``); its methods give ``Selection``s."""

    def _select(self, query: ReadQuery) -> Selection:
        return Selection(self.source, self._checked(query))


class AsyncReader(_Reads[AsyncSelection]):
    """Reads of one store for asyncio (``connect_async``); its methods give
    ``AsyncSelection``s, whose results are awaited."""

    def _select(self, query: ReadQuery) -> AsyncSelection:
        return AsyncSelection(self.source, self._checked(query))

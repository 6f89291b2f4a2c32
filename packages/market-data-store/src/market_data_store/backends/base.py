"""The interface every storage backend implements (SQLite, PostgreSQL).

Writes keep the newest version of every key (docs/store.md, "Versions"): a row replaces the
stored one when its version ``(as_of, revision)`` is higher, or equal with greater values
(a tie, counted in ``WriteResult.conflicts``), whatever the order in which writes arrive; a
replay changes nothing, not even ``ingested_at``. A batch may hold a key more than once: the
same rule picks one. Each ``write`` is one transaction. Backends raise
``TransientBackendError`` for failures worth retrying and ``PermanentBackendError`` for the
others, so the write coordinator can decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import pyarrow as pa

from market_data_core import AuditEnvelope, Bar, Quote, Signal, Trade
from market_data_core.columns import Kind, Ordinals, from_models, to_models
from market_data_store.chunks import KIND_OF_MODEL, ArrowChunk, Batch, Chunk, ModelChunk, Record
from market_data_store.job_run import JobRun

__all__ = [
    "DATA_TABLES",
    "Backend",
    "Freshness",
    "ModelReads",
    "Record",
    "TableWrites",
    "WriteResult",
    "complete_page",
    "split_records",
    "tables_of",
]

DATA_TABLES = ("bars", "trades", "quotes", "signals")


@dataclass(slots=True)
class WriteResult:
    """Rows upserted per table by one ``write`` call (a key twice in a batch counts once),
    and ``conflicts``: keys where two versions of equal ``(as_of, revision)`` held other
    values (decided by the values, the same way whatever the order: see docs/store.md)."""

    bars: int = 0
    trades: int = 0
    quotes: int = 0
    signals: int = 0
    conflicts: int = 0

    @property
    def total(self) -> int:
        return self.bars + self.trades + self.quotes + self.signals

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.bars += other.bars
        self.trades += other.trades
        self.quotes += other.quotes
        self.signals += other.signals
        self.conflicts += other.conflicts
        return self


@dataclass(frozen=True, slots=True)
class Freshness:
    """The newest data the store holds for a symbol in one table."""

    table: str
    symbol: str
    latest: datetime
    rows: int


@dataclass(slots=True)
class _Split:
    bars: list[Bar] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)


def tables_of(records: Sequence[Record] | Chunk) -> dict[Kind, pa.Table]:
    """A write's records as one table per kind (core's columnar schemas), in the order
    given: the Arrow chunks of a ``Batch`` as they are, runs of models converted. Ticks
    without an ordinal get theirs here, counted over this write (records that entered
    through ``Store.submit*`` have them already)."""
    parts: dict[Kind, list[pa.Table]] = {}
    for chunk in _chunks_of(records):
        if isinstance(chunk, ArrowChunk):
            parts.setdefault(chunk.kind, []).append(chunk.table)
        else:
            _add_models(parts, chunk.models)
    return _with_ordinals(parts)


def _chunks_of(records: Sequence[Record] | Chunk) -> tuple[Chunk, ...]:
    if isinstance(records, Batch):
        return records.chunks
    if isinstance(records, ArrowChunk | ModelChunk):
        return (records,)
    return (ModelChunk(tuple(records)),) if len(records) else ()


def _with_ordinals(parts: Mapping[Kind, list[pa.Table]]) -> dict[Kind, pa.Table]:
    """One table per kind; ticks without an ordinal get theirs, counted over the write."""
    ordinals = Ordinals()
    out = {}
    for kind, tables in parts.items():
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        out[kind] = ordinals.assign(table, kind) if kind in (Kind.TRADES, Kind.QUOTES) else table
    return out


class TableWrites:
    """A backend's three ways in, over its one transaction ``write_tables``: ``write`` (a
    ``Batch`` of chunks or any sequence of models, what the write coordinator calls),
    ``write_models`` (core models) and ``write_table`` (a conformed table of one kind)."""

    async def write_tables(self, tables: Mapping[Kind, pa.Table]) -> WriteResult:
        """Keep the newest version of each key of ``tables`` (one per kind), in one
        transaction."""
        raise NotImplementedError

    async def write(self, records: Sequence[Record]) -> WriteResult:
        """Keep the newest version of each key of a mixed batch, in one transaction."""
        return await self.write_tables(tables_of(records))

    async def write_models(self, models: Sequence[Record]) -> WriteResult:
        """Write core models (of any kinds), in one transaction."""
        return await self.write_tables(tables_of(ModelChunk(tuple(models))))

    async def write_table(self, kind: Kind, table: pa.Table) -> WriteResult:
        """Write a conformed table of ``kind``, in one transaction."""
        return await self.write_tables(tables_of(ArrowChunk(kind, table)))


def _add_models(parts: dict[Kind, list[pa.Table]], models: Sequence[Record]) -> None:
    types = set(map(type, models))
    if len(types) == 1:  # one kind: no split
        kind = KIND_OF_MODEL[types.pop()]
        parts.setdefault(kind, []).append(from_models(models, kind))
        return
    split = split_records(models)
    for kind, items in (
        (Kind.BARS, split.bars),
        (Kind.TRADES, split.trades),
        (Kind.QUOTES, split.quotes),
        (Kind.SIGNALS, split.signals),
    ):
        if items:
            parts.setdefault(kind, []).append(from_models(items, kind))


def split_records(records: Sequence[Record]) -> _Split:
    """Group a mixed batch by table, keeping order within each table."""
    split = _Split()
    for record in records:
        if isinstance(record, Bar):
            split.bars.append(record)
        elif isinstance(record, Trade):
            split.trades.append(record)
        elif isinstance(record, Quote):
            split.quotes.append(record)
        else:
            split.signals.append(record)
    return split


@runtime_checkable
class Backend(Protocol):
    """A database the store writes to and reads from."""

    @property
    def name(self) -> str:
        """``sqlite`` or ``postgresql``."""
        ...

    async def open(self) -> None:
        """Connect (a pool for PostgreSQL); does not create tables (see ``migrate``)."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``BackendError`` unless the database answers a trivial query."""
        ...

    async def write(self, records: Sequence[Record]) -> WriteResult:
        """Keep the newest version of each key of a mixed batch, in one transaction."""
        ...

    async def write_models(self, models: Sequence[Record]) -> WriteResult:
        """Write core models (of any kinds), in one transaction."""
        ...

    async def write_table(self, kind: Kind, table: pa.Table) -> WriteResult:
        """Write a conformed table of ``kind``, in one transaction."""
        ...

    async def query_bars(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        *,
        source: str | None = None,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Bar]:
        """Bars with ``start <= bar.start < end`` ordered by (start, source), at most
        ``limit``; page with ``complete_page``. ``as_known_at``: the versions the store held
        at that time (from history), instead of the current ones."""
        ...

    async def query_table(
        self,
        kind: Kind,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        timeframe: str | None = None,
        source: str | None = None,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> pa.Table:
        """The rows of ``query_bars``/``query_trades``/``query_quotes`` as an Arrow table of
        core's schema for ``kind``."""
        ...

    async def revisions(
        self,
        kind: Kind,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        timeframe: str | None = None,
        source: str | None = None,
        limit: int = 1000,
    ) -> pa.Table:
        """Every version the store holds of the records of ``kind`` in the range (current
        and replaced), with ``ingested_at`` (when the store learned it) and
        ``superseded_at`` (when a newer one replaced it; null: current), ordered by key
        and ``ingested_at``."""
        ...

    async def purge_history(self, before: datetime) -> int:
        """Delete the versions replaced before ``before``; return how many."""
        ...

    async def latest_bars(self, timeframe: str, symbols: Sequence[str] | None = None) -> list[Bar]:
        """The newest bar of each symbol (of all symbols when ``symbols`` is None)."""
        ...

    async def query_trades(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Trade]: ...

    async def query_quotes(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Quote]: ...

    async def freshness(self) -> list[Freshness]:
        """Per table and symbol: the newest timestamp and the row count."""
        ...

    async def count(self, table: str) -> int:
        """Rows in ``table`` (bars, trades, quotes, signals)."""
        ...

    async def delete_before(self, table: str, cutoff: datetime, *, dry_run: bool = False) -> int:
        """Retention: delete rows of a data table (and their history) older than
        ``cutoff``; return how many current rows. ``dry_run``: delete nothing, count them."""
        ...

    async def record_audit(self, envelope: AuditEnvelope) -> None:
        """Append an audit record (admin calls)."""
        ...

    async def recent_audit(self, limit: int = 100) -> list[AuditEnvelope]:
        """The newest audit records first."""
        ...

    async def save_job_run(self, run: JobRun) -> None:
        """Insert or replace a job run (by id)."""
        ...

    async def get_job_run(self, run_id: str) -> JobRun | None: ...

    async def recent_job_runs(self, limit: int = 50, job_name: str | None = None) -> list[JobRun]:
        """Newest first."""
        ...

    async def stuck_job_runs(self, heartbeat_before: datetime) -> list[JobRun]:
        """Runs still ``running`` whose heartbeat is older than ``heartbeat_before``."""
        ...


class ModelReads:
    """``query_bars``/``query_trades``/``query_quotes`` as models, from a backend's
    ``query_table`` (the rows were checked on the way in: the models are built without
    validating them again)."""

    async def query_table(
        self,
        kind: Kind,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        timeframe: str | None = None,
        source: str | None = None,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> pa.Table:
        raise NotImplementedError

    async def query_bars(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        *,
        source: str | None = None,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Bar]:
        table = await self.query_table(
            Kind.BARS, symbol, start, end, timeframe=timeframe, source=source, limit=limit,
            as_known_at=as_known_at,
        )  # fmt: skip
        return to_models(table, Kind.BARS, trusted=True)

    async def query_trades(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Trade]:
        table = await self.query_table(
            Kind.TRADES, symbol, start, end, limit=limit, as_known_at=as_known_at
        )
        return to_models(table, Kind.TRADES, trusted=True)

    async def query_quotes(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Quote]:
        table = await self.query_table(
            Kind.QUOTES, symbol, start, end, limit=limit, as_known_at=as_known_at
        )
        return to_models(table, Kind.QUOTES, trusted=True)


def complete_page(bars: list[Bar], limit: int) -> tuple[list[Bar], datetime | None]:
    """Cut a full page of bars (ordered by start, source) at its last complete start, so that
    the next page, which begins at the returned start, misses no source's bar at that
    start. Returns the bars to keep and the next page's start (``None`` on the last page)."""
    if len(bars) < limit:
        return bars, None
    last = bars[-1].start
    keep = [bar for bar in bars if bar.start < last]
    if not keep:  # more sources at one start than a page holds: move on
        return bars, last + timedelta(microseconds=1)
    return keep, last

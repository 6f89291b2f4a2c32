"""The interface every storage backend implements (SQLite, PostgreSQL).

Writes are idempotent upserts keyed by each table's primary key: replaying a batch changes
nothing, and writing a bar again with other values (a newer revision) replaces it. A batch
may hold the same key more than once; the last occurrence wins. Backends raise
``TransientBackendError`` for failures worth retrying and ``PermanentBackendError`` for the
others, so the write coordinator can decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from market_data_core import AuditEnvelope, Bar, Quote, Signal, Trade

if TYPE_CHECKING:
    from market_data_store.jobs import JobRun

__all__ = [
    "DATA_TABLES",
    "Backend",
    "Freshness",
    "Record",
    "WriteResult",
    "complete_page",
    "split_records",
]

DATA_TABLES = ("bars", "trades", "quotes", "signals")

Record = Bar | Trade | Quote | Signal
"""What the store persists (job runs and audit records have their own calls)."""


@dataclass(slots=True)
class WriteResult:
    """Rows upserted per table by one ``write`` call (duplicates in a batch count once)."""

    bars: int = 0
    trades: int = 0
    quotes: int = 0
    signals: int = 0

    @property
    def total(self) -> int:
        return self.bars + self.trades + self.quotes + self.signals

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.bars += other.bars
        self.trades += other.trades
        self.quotes += other.quotes
        self.signals += other.signals
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
        """Upsert a mixed batch in one transaction per table."""
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
    ) -> list[Bar]:
        """Bars with ``start <= bar.start < end`` ordered by (start, source), at most
        ``limit``; page with ``complete_page``."""
        ...

    async def latest_bars(self, timeframe: str, symbols: Sequence[str] | None = None) -> list[Bar]:
        """The newest bar of each symbol (of all symbols when ``symbols`` is None)."""
        ...

    async def query_trades(
        self, symbol: str, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Trade]: ...

    async def query_quotes(
        self, symbol: str, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Quote]: ...

    async def freshness(self) -> list[Freshness]:
        """Per table and symbol: the newest timestamp and the row count."""
        ...

    async def count(self, table: str) -> int:
        """Rows in ``table`` (bars, trades, quotes, signals)."""
        ...

    async def delete_before(self, table: str, cutoff: datetime) -> int:
        """Retention: delete rows of a data table older than ``cutoff``; return how many."""
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

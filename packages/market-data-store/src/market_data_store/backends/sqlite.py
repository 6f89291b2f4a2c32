"""The embedded SQLite backend: one file, WAL journal, no server.

All database work runs on one dedicated thread with one connection (SQLite serialises
writers anyway), so the event loop never blocks; Arrow tables become row tuples on that
thread too, column by column. Writes are one transaction per call: per table a plain
``INSERT`` first (the append fast path: most market data has new keys), and when a key is
already stored, ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <values differ>`` from a
savepoint instead: a replay changes nothing (not even ``ingested_at``), a newer revision
replaces the old row.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import repeat
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from market_data_core import AuditEnvelope, Bar, Quote, Trade
from market_data_store.backends import _rows
from market_data_store.backends._columns import rows_to_table, split_columnar
from market_data_store.backends.base import (
    DATA_TABLES,
    Freshness,
    Record,
    WriteResult,
    split_records,
)
from market_data_store.columnar import Kind
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import (
    BackendError,
    InvalidValueError,
    PermanentBackendError,
    StoreConfigurationError,
    TransientBackendError,
)
from market_data_store.jobs import JobRun

__all__ = ["SqliteBackend"]

T = TypeVar("T")


def _upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    values = [c for c in columns if c not in key]
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in values)
    old = ", ".join(f"{table}.{c}" for c in values)
    new = ", ".join(f"excluded.{c}" for c in values)
    differ = f"({old}) IS NOT ({new})"
    return (
        f"INSERT INTO {table} ({names}, ingested_at) VALUES ({marks}, ?) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}, "
        f"ingested_at = excluded.ingested_at WHERE {differ}"
    )


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}, ingested_at) VALUES ({marks}, ?)"


_COLUMNS = {
    "bars": (_rows.BAR_COLUMNS, _rows.BAR_KEY),
    "trades": (_rows.TRADE_COLUMNS, _rows.TRADE_KEY),
    "quotes": (_rows.QUOTE_COLUMNS, _rows.QUOTE_KEY),
    "signals": (_rows.SIGNAL_COLUMNS, _rows.SIGNAL_KEY),
}
_SQL = {table: _upsert_sql(table, columns, key) for table, (columns, key) in _COLUMNS.items()}
_APPEND = {table: _insert_sql(table, columns) for table, (columns, _) in _COLUMNS.items()}
"""Plain inserts: the append fast path (new keys only; a key already stored fails it)."""


class SqliteBackend:
    """SQLite behind the ``Backend`` protocol."""

    name = "sqlite"

    def __init__(self, url: DatabaseUrl, *, busy_timeout_ms: int = 5000) -> None:
        if not url.is_sqlite:
            msg = f"SqliteBackend needs a sqlite:/// URL, got {url}"
            raise StoreConfigurationError(msg)
        self.url = url
        self.path = url.sqlite_path()
        self._busy_timeout_ms = busy_timeout_ms
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
            await self._call(self._connect)

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        self._connection = connection

    async def close(self) -> None:
        if self._executor is not None:
            if self._connection is not None:
                await self._call(self._connection.close)
                self._connection = None
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            msg = "SqliteBackend is not open: call open() first"
            raise TransientBackendError(msg)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, UnicodeError) as exc:
            # a value SQLite cannot keep (a constraint, an integer beyond 64 bits, text that
            # is not UTF-8): the record's fault, not the database's
            raise InvalidValueError(f"sqlite: {exc}", reason=str(exc)) from exc
        except sqlite3.OperationalError as exc:
            raise TransientBackendError(f"sqlite: {exc}") from exc
        except sqlite3.Error as exc:
            raise PermanentBackendError(f"sqlite: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            msg = "SqliteBackend is not open"
            raise BackendError(msg)
        return self._connection

    async def ping(self) -> None:
        await self._call(lambda: self._db.execute("SELECT 1").fetchone())

    async def schema_revision(self) -> str | None:
        """The migration the database is at (``None``: not migrated), read directly."""

        def read() -> str | None:
            try:
                row = self._db.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError:  # no such table
                return None
            return None if row is None else str(row[0])

        return await self._call(read)

    async def write(self, records: Sequence[Record]) -> WriteResult:
        columnar = split_columnar(records)
        split = split_records(columnar.models)
        to_us = _rows.to_micros
        batches: dict[str, list[tuple[Any, ...]] | pa.Table] = {
            "bars": _rows.last_per_key((_rows.bar_row(b, to_us) for b in split.bars), range(4)),
            "trades": _rows.last_per_key(
                (_rows.trade_row(t, to_us) for t in split.trades), range(5)
            ),
            "quotes": _rows.last_per_key(
                (_rows.quote_row(q, to_us) for q in split.quotes), range(3)
            ),
            "signals": _rows.last_per_key(
                (_rows.signal_row(s, to_us) for s in split.signals), range(4)
            ),
        }
        for kind, table in columnar.tables.items():  # never a model chunk of the same table
            batches[str(kind)] = table
        return await self._call(self._write, batches)

    def _write(self, batches: dict[str, list[tuple[Any, ...]] | pa.Table]) -> WriteResult:
        """One transaction. Per table, the append fast path first (plain ``INSERT``: most
        market data has new keys); when a key is already stored, that table's rows are
        upserted instead, from a savepoint, so a replay or a revision costs one failed
        statement and a rollback of it."""
        now = _rows.to_micros(datetime.now().astimezone())
        db = self._db
        result = WriteResult()
        db.execute("BEGIN IMMEDIATE")
        try:
            for table, given in batches.items():
                if isinstance(given, pa.Table):
                    rows = _column_rows(given, now)
                else:
                    rows = [(*row, now) for row in given]
                if not rows:
                    continue
                db.execute("SAVEPOINT append")
                try:
                    db.executemany(_APPEND[table], rows)
                except sqlite3.IntegrityError:  # a key already stored (or a bad value)
                    db.execute("ROLLBACK TO append")
                    db.executemany(_SQL[table], rows)
                db.execute("RELEASE append")
                setattr(result, table, len(rows))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self._call(lambda: self._db.execute(sql, params).fetchall())

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
        rows = await self._bar_rows(symbol, timeframe, start, end, source, limit)
        return [_rows.bar_from_row(row, _rows.from_micros) for row in rows]

    async def _bar_rows(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        source: str | None,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        sql = (
            f"SELECT {', '.join(_rows.BAR_COLUMNS)} FROM bars WHERE symbol = ? AND timeframe = ?"
            " AND start >= ? AND start < ?"
        )
        params: list[Any] = [symbol, timeframe, _rows.to_micros(start), _rows.to_micros(end)]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        sql += " ORDER BY start, source LIMIT ?"
        return await self._fetch(sql, [*params, limit])

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
    ) -> pa.Table:
        """See ``PostgresBackend.query_table``."""
        if kind is Kind.BARS:
            assert timeframe is not None, "bars need a timeframe"
            rows = await self._bar_rows(symbol, timeframe, start, end, source, limit)
        else:
            columns = _rows.TRADE_COLUMNS if kind is Kind.TRADES else _rows.QUOTE_COLUMNS
            rows = await self._range(str(kind), columns, symbol, start, end, limit=limit)
        return rows_to_table(kind, rows, micros=True)

    async def latest_bars(self, timeframe: str, symbols: Sequence[str] | None = None) -> list[Bar]:
        columns = ", ".join(f"b.{c}" for c in _rows.BAR_COLUMNS)
        sql = (
            f"SELECT {columns} FROM bars b JOIN (SELECT symbol, max(start) AS start FROM bars"
            " WHERE timeframe = ? GROUP BY symbol) m ON b.symbol = m.symbol AND b.start = m.start"
            " WHERE b.timeframe = ?"
        )
        params: list[Any] = [timeframe, timeframe]
        if symbols is not None:
            sql += f" AND b.symbol IN ({', '.join('?' for _ in symbols)})"
            params.extend(symbols)
        rows = await self._fetch(sql + " ORDER BY b.symbol, b.source", params)
        latest: dict[str, Bar] = {}
        for row in rows:
            latest.setdefault(row[1], _rows.bar_from_row(row, _rows.from_micros))
        return list(latest.values())

    async def query_trades(
        self, symbol: str, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Trade]:
        rows = await self._range("trades", _rows.TRADE_COLUMNS, symbol, start, end, limit=limit)
        return [_rows.trade_from_row(row, _rows.from_micros) for row in rows]

    async def query_quotes(
        self, symbol: str, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Quote]:
        rows = await self._range("quotes", _rows.QUOTE_COLUMNS, symbol, start, end, limit=limit)
        return [_rows.quote_from_row(row, _rows.from_micros) for row in rows]

    async def _range(
        self,
        table: str,
        /,
        columns: Sequence[str],
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        sql = (
            f"SELECT {', '.join(columns)} FROM {table} WHERE symbol = ? AND ts >= ? AND ts < ?"
            " ORDER BY ts LIMIT ?"
        )
        params = [symbol, _rows.to_micros(start), _rows.to_micros(end), limit]
        return await self._fetch(sql, params)

    async def freshness(self) -> list[Freshness]:
        result = []
        for table in DATA_TABLES:
            column = "start" if table == "bars" else "ts"
            sql = f"SELECT symbol, max({column}), count(*) FROM {table} GROUP BY symbol"
            for symbol, latest, rows in await self._fetch(sql + " ORDER BY symbol", []):
                result.append(Freshness(table, symbol, _rows.from_micros(latest), rows))
        return result

    async def count(self, table: str) -> int:
        _check_table(table)
        rows = await self._fetch(f"SELECT count(*) FROM {table}", [])
        return int(rows[0][0])

    async def delete_before(self, table: str, cutoff: datetime) -> int:
        _check_table(table)
        column = "start" if table == "bars" else "ts"
        sql = f"DELETE FROM {table} WHERE {column} < ?"
        return await self._call(self._execute_count, sql, [_rows.to_micros(cutoff)])

    def _execute_count(self, sql: str, params: Sequence[Any]) -> int:
        return self._db.execute(sql, params).rowcount  # autocommit: one statement

    async def record_audit(self, envelope: AuditEnvelope) -> None:
        row = _rows.audit_row(envelope, _rows.to_micros)
        marks = ", ".join("?" * len(row))
        sql = f"INSERT INTO audit_log ({', '.join(_rows.AUDIT_COLUMNS)}) VALUES ({marks})"
        await self._call(self._execute_count, sql, row)

    async def recent_audit(self, limit: int = 100) -> list[AuditEnvelope]:
        sql = f"SELECT {', '.join(_rows.AUDIT_COLUMNS)} FROM audit_log ORDER BY ts DESC LIMIT ?"
        rows = await self._fetch(sql, [limit])
        return [_rows.audit_from_row(row, _rows.from_micros) for row in rows]

    async def save_job_run(self, run: JobRun) -> None:
        row = _rows.job_row(run, _rows.to_micros)
        marks = ", ".join("?" * len(row))
        sql = f"INSERT OR REPLACE INTO job_runs ({', '.join(_rows.JOB_COLUMNS)}) VALUES ({marks})"
        await self._call(self._execute_count, sql, row)

    async def get_job_run(self, run_id: str) -> JobRun | None:
        rows = await self._fetch(f"SELECT {_JOB_SELECT} FROM job_runs WHERE id = ?", [run_id])
        return _rows.job_from_row(rows[0], _rows.from_micros) if rows else None

    async def recent_job_runs(self, limit: int = 50, job_name: str | None = None) -> list[JobRun]:
        where, params = ("WHERE job_name = ?", [job_name]) if job_name else ("", [])
        sql = f"SELECT {_JOB_SELECT} FROM job_runs {where} ORDER BY started_at DESC LIMIT ?"
        rows = await self._fetch(sql, [*params, limit])
        return [_rows.job_from_row(row, _rows.from_micros) for row in rows]

    async def stuck_job_runs(self, heartbeat_before: datetime) -> list[JobRun]:
        sql = (
            f"SELECT {_JOB_SELECT} FROM job_runs WHERE status = 'running' AND heartbeat_at < ?"
            " ORDER BY heartbeat_at"
        )
        rows = await self._fetch(sql, [_rows.to_micros(heartbeat_before)])
        return [_rows.job_from_row(row, _rows.from_micros) for row in rows]


_JOB_SELECT = ", ".join(_rows.JOB_COLUMNS)


def _check_table(table: str) -> None:
    if table not in DATA_TABLES:
        msg = f"unknown table {table!r}; one of {', '.join(DATA_TABLES)}"
        raise StoreConfigurationError(msg)


def _column_rows(table: pa.Table, now: int) -> list[tuple[Any, ...]]:
    """Row tuples of an Arrow table in the store's layout (``_columns.store_table``) with
    ``now`` (``ingested_at``) last, timestamps as integer microseconds, built column by
    column: one tuple per row, and a column of nulls costs nothing."""
    rows = table.num_rows
    columns: list[Iterable[Any]] = []
    for column in table.columns:
        if column.null_count == rows:
            columns.append(repeat(None, rows))
        elif pa.types.is_timestamp(column.type):
            columns.append(pc.cast(column, pa.int64()).to_pylist())
        else:
            columns.append(column.to_pylist())
    return list(zip(*columns, repeat(now, rows), strict=True))

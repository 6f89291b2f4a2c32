"""The embedded SQLite backend: one file, WAL journal, no server.

All database work runs on one dedicated thread with one connection (SQLite serialises
writers anyway), so the event loop never blocks; Arrow tables become row tuples before
they reach that thread (column by column, while the thread runs the other writers'
statements). A write is one transaction (``BEGIN IMMEDIATE``: the write lock first, so the
transaction's time, ``ingested_at``, orders writes as they commit). Per table a plain
``INSERT`` first (the append fast path: most market data has new keys); when a key is
already stored (or twice in the batch), the newest version of each key of the batch
(``latest_per_key``) goes through ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <newer>``
(``_layout.newer_sql``): a replay changes nothing (not even ``ingested_at``), an older
version arriving late changes nothing, a newer one replaces the row and the trigger keeps
the replaced one in ``<table>_history``. Ticks of a time that has ticks stored before
nanoseconds go through a staging table, which replaces their microsecond twins.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from market_data_core import AuditEnvelope, Bar
from market_data_core.columns import Kind, latest_per_key, to_models
from market_data_store.backends import _rows
from market_data_store.backends._layout import (
    LAYOUTS,
    LEGACY_NANOS,
    ORDER,
    Layout,
    from_store,
    newer_sql,
    to_store,
)
from market_data_store.backends.base import (
    DATA_TABLES,
    Freshness,
    ModelReads,
    TableWrites,
    WriteResult,
)
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import (
    BackendError,
    InvalidValueError,
    PermanentBackendError,
    StoreConfigurationError,
    TransientBackendError,
)
from market_data_store.job_run import JobRun

__all__ = ["SqliteBackend"]

T = TypeVar("T")
_D = "sqlite"


def _names(layout: Layout) -> str:
    return ", ".join(f'"{c}"' for c in (*layout.columns, "ingested_at"))


_VALUES: Final = "@values"  # where a statement takes its values: see _Bound
_LITERAL_FROM: Final = 2_000  # rows from which constant columns are literals of a statement


def _insert_sql(layout: Layout, into: str) -> str:
    return f"INSERT INTO {into} ({_names(layout)}) VALUES ({_VALUES})"


@dataclass(frozen=True, slots=True)
class _Bound:
    """A batch's values for ``INSERT ... VALUES``: per column a parameter (``?``) or, for a
    column without a value, ``NULL``, and, in a batch of ``_LITERAL_FROM`` rows or more,
    for a column of one integer or text value (a source, a version, ordinal 0) that value
    as a literal of the statement: each parameter costs every row its binding, while a new
    statement costs one prepare (~0.1 ms) per batch. ``rows``: the parameters, row by row
    (built before the database thread, overlapping the other writers' statements)."""

    values: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    @classmethod
    def of(cls, table: pa.Table) -> _Bound:
        n = table.num_rows
        values: list[str] = []
        bound: list[Iterable[Any]] = []
        for column in table.columns:
            literal = "NULL" if column.null_count == n else _literal(column, n)
            values.append(literal or "?")
            if literal is None:
                bound.append(_python_values(column))
        return cls(tuple(values), list(zip(*bound, strict=True)) if bound else [()] * n)

    def statement(self, sql: str, now: int) -> tuple[str, Iterable[Any]]:
        """``sql`` and its parameters, ``now`` as ``ingested_at``."""
        if len(self.rows) >= _LITERAL_FROM:
            return sql.replace(_VALUES, ", ".join((*self.values, str(int(now))))), self.rows
        values = ", ".join((*self.values, "?"))
        return sql.replace(_VALUES, values), [(*row, now) for row in self.rows]


def _python_values(column: pa.ChunkedArray) -> list[Any]:
    """The column's values as Python objects for ``executemany`` (``None`` for null): the
    same values as ``to_pylist()`` (timestamps as integers), built in C where that is
    exact: numbers without nulls through numpy (``int`` and ``float`` objects), text
    through its dictionary, so that a symbol is one ``str`` object for all its rows (built
    once, and SQLite's binding reuses its UTF-8)."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        column = pc.cast(column, pa.int64())
        kind = column.type
    if column.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        values: list[Any] = column.to_numpy().tolist()
        return values
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = pc.dictionary_encode(column.combine_chunks())  # one dictionary
        words = np.asarray([*encoded.dictionary.to_pylist(), None], dtype=object)
        indices = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy()
        strings: list[Any] = words[indices].tolist()
        return strings
    others: list[Any] = column.to_pylist()
    return others


def _literal(column: pa.ChunkedArray, n: int) -> str | None:
    """The SQL literal of a column holding one integer or text value (``None``: bind it).

    The type first (floats are never literals: a decimal literal need not parse back to
    the same double), then the first value against the last (a time, a price, a symbol
    of a batch of many usually differ there), then every value against the first: no
    hashing of a column that is not constant (``count_distinct`` of a batch's times cost
    a tenth of an ingest's time)."""
    if n < _LITERAL_FROM or column.null_count:
        return None
    kind = column.type
    number = pa.types.is_integer(kind) or pa.types.is_timestamp(kind)
    if not (number or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return None
    first = column[0]
    if not first.equals(column[n - 1]) or not pc.all(pc.equal(column, first)).as_py():
        return None
    if number:
        return str(int(pc.cast(column, pa.int64())[0].as_py()))
    text = first.as_py()
    return None if "\x00" in text else "'" + text.replace("'", "''") + "'"


def _upsert_sql(layout: Layout, stage: str | None = None) -> str:
    """Insert new keys, replace a stored row by a newer version: row by row (``VALUES``),
    or from the staging table ``stage``."""
    t = layout.name
    key = ", ".join(f'"{c}"' for c in layout.key)
    updated = [c for c in layout.columns if c not in layout.key]
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in updated)
    learned = f'"ingested_at" = max(excluded."ingested_at", {t}."ingested_at")'
    if stage is None:
        source = f"VALUES ({_VALUES})"
    else:
        source = f"SELECT {_names(layout)} FROM {stage} WHERE true"
    return (
        f"INSERT INTO {t} ({_names(layout)}) {source}"
        f" ON CONFLICT ({key}) DO UPDATE SET {sets}, {learned}"
        f" WHERE {newer_sql(layout, 'excluded', t, _D)}"
    )


def _legacy_sql(layout: Layout, stage: str) -> tuple[str, str]:
    """Ticks stored before nanoseconds (``ts_nanos = -1``) that a staged tick of the same
    microsecond and identity replaces: kept in history, then deleted."""
    t = layout.name
    same = " AND ".join(f's."{c}" = {t}."{c}"' for c in layout.key if c != "ts_nanos")
    twin = f"{t}.ts_nanos = {LEGACY_NANOS} AND EXISTS (SELECT 1 FROM {stage} s WHERE {same})"
    columns = ", ".join(f'{t}."{c}"' for c in (*layout.columns, "ingested_at"))
    keep = (
        f'INSERT INTO {layout.history} ({_names(layout)}, "superseded_at")'
        f" SELECT {columns}, ? FROM {t} WHERE {twin}"
    )
    return keep, f"DELETE FROM {t} WHERE {twin}"


_SQL = {
    kind: (
        _insert_sql(layout, layout.name),
        _upsert_sql(layout),
        _upsert_sql(layout, f"_mds_stage_{kind}"),
    )
    for kind, layout in LAYOUTS.items()
}
_US = 1_000_000


class SqliteBackend(TableWrites, ModelReads):
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
        self._last_learned = 0
        self._legacy_until: dict[Kind, int | None] = {}
        self._ties = 0

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
            await self._call(self._connect)

    def _connect(self) -> None:
        if not self.path.parent.is_dir():  # a typo must not leave directories behind
            msg = (
                f"the directory of the SQLite database {self.path} does not exist: create"
                f" {self.path.parent} or choose another path"
            )
            raise StoreConfigurationError(msg)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.create_function("mds_tie", 1, self._tie)  # see _layout.newer_sql
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

    async def write_tables(self, tables: Mapping[Kind, pa.Table]) -> WriteResult:
        """Keep the newest version of each key of ``tables`` (one per kind, see
        ``TableWrites``), in one transaction."""
        as_of = time.time_ns()  # for records that came without a version (direct writes)
        prepared = {}
        for kind, table in tables.items():
            stored = to_store(kind, table, as_of=as_of)
            prepared[kind] = (stored, _Bound.of(stored))
        return await self._call(self._write, prepared)

    def _write(self, prepared: dict[Kind, tuple[pa.Table, _Bound]]) -> WriteResult:
        """One transaction; per table, the append fast path first (plain ``INSERT``: most
        market data has new keys); when a key is already stored (or may be, for ticks of
        a time that has ticks stored before nanoseconds), the upsert instead."""
        db = self._db
        result = WriteResult()
        db.execute("BEGIN IMMEDIATE")
        try:
            now = self._learned_at()
            if not self._legacy_until:
                self._find_legacy()
            for kind, (given, bound) in prepared.items():
                layout = LAYOUTS[kind]
                if not given.num_rows:
                    continue
                if self._may_replace_legacy(layout, given):
                    written, conflicts = self._upsert(layout, given, now, bound)
                else:
                    db.execute("SAVEPOINT append")
                    try:  # a key twice in the batch, or stored already, fails it
                        db.executemany(*bound.statement(_SQL[kind][0], now))
                        written, conflicts = given.num_rows, 0
                    except sqlite3.IntegrityError:
                        db.execute("ROLLBACK TO append")
                        written, conflicts = self._upsert(layout, given, now, bound)
                    db.execute("RELEASE append")
                setattr(result, layout.name, written)
                result.conflicts += conflicts
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return result

    def _learned_at(self) -> int:
        """The transaction's time (microseconds), never before the previous one's."""
        now = max(time.time_ns() // 1000, self._last_learned + 1)
        self._last_learned = now
        return now

    def _upsert(
        self, layout: Layout, table: pa.Table, now: int, bound: _Bound | None = None
    ) -> tuple[int, int]:
        """The newest version of each key of ``table`` (whose values may be ``bound``),
        row by row (or through the staging table where ticks stored before nanoseconds may
        be replaced); returns the rows written (each key once) and the conflicts found
        (see ``WriteResult``)."""
        db = self._db
        latest = latest_per_key(table, layout.kind, keys=layout.key)
        if bound is None or latest.table is not table:
            bound = _Bound.of(latest.table)
        self._ties = 0
        if layout.nanos and self._legacy_until.get(layout.kind) is not None:
            stage = f"_mds_stage_{layout.kind}"
            db.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT {_names(layout)}"
                f" FROM {layout.name} WHERE 0"
            )
            db.execute(f"DELETE FROM {stage}")
            db.executemany(*bound.statement(_insert_sql(layout, stage), now))
            keep, delete = _legacy_sql(layout, stage)
            db.execute(keep, [now])
            db.execute(delete)
            db.execute(_SQL[layout.kind][2])
        else:
            db.executemany(*bound.statement(_SQL[layout.kind][1], now))
        return latest.table.num_rows, self._ties + latest.conflicts

    def _tie(self, wins: int) -> int:
        """``mds_tie`` in the upsert's condition: counts a tie, says whether new wins."""
        self._ties += 1
        return wins

    def _may_replace_legacy(self, layout: Layout, table: pa.Table) -> bool:
        """Whether a tick of ``table`` may have a twin stored before nanoseconds."""
        until = self._legacy_until.get(layout.kind)
        if until is None or not table.num_rows:
            return False
        return bool(pc.min(table.column("ts").cast(pa.int64())).as_py() <= until)

    def _find_legacy(self) -> None:
        """The newest tick stored before nanoseconds, per table (``None``: none)."""
        for kind in (Kind.TRADES, Kind.QUOTES):
            row = self._db.execute(
                f"SELECT max(ts) FROM {kind} WHERE ts_nanos = {LEGACY_NANOS}"
            ).fetchone()
            self._legacy_until[kind] = None if row is None else row[0]

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await self._call(lambda: self._db.execute(sql, params).fetchall())

    async def _select(
        self,
        kind: Kind,
        where: str,
        params: Sequence[Any],
        *,
        limit: int,
        as_known_at: datetime | None,
    ) -> list[tuple[Any, ...]]:
        """Rows of ``kind`` matching ``where``, current or as known at a time."""
        layout = LAYOUTS[kind]
        columns = ", ".join(f'"{c}"' for c in layout.columns)
        if as_known_at is None:
            sql = f"SELECT {columns} FROM {layout.name} WHERE {where}"
            args = list(params)
        else:
            known = _rows.to_micros(as_known_at)
            sql = (
                f"SELECT {columns} FROM {layout.name} WHERE {where} AND ingested_at <= ?"
                f" UNION ALL SELECT {columns} FROM {layout.history} WHERE {where}"
                " AND ingested_at <= ? AND superseded_at > ?"
            )
            args = [*params, known, *params, known, known]
        return await self._fetch(f"{sql} ORDER BY {ORDER[kind]} LIMIT ?", [*args, limit])

    async def _bar_rows(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        source: str | None,
        limit: int,
        as_known_at: datetime | None = None,
    ) -> list[tuple[Any, ...]]:
        where = "symbol = ? AND timeframe = ? AND start >= ? AND start < ?"
        params: list[Any] = [symbol, timeframe, _rows.to_micros(start), _rows.to_micros(end)]
        if source is not None:
            where += " AND source = ?"
            params.append(source)
        return await self._select(Kind.BARS, where, params, limit=limit, as_known_at=as_known_at)

    async def _range(
        self,
        kind: Kind,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int,
        as_known_at: datetime | None = None,
    ) -> list[tuple[Any, ...]]:
        where = "symbol = ? AND ts >= ? AND ts < ?"
        params = [symbol, _rows.to_micros(start), _rows.to_micros(end)]
        return await self._select(kind, where, params, limit=limit, as_known_at=as_known_at)

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
        """See ``Backend.query_table``."""
        if kind is Kind.BARS:
            assert timeframe is not None, "bars need a timeframe"
            rows = await self._bar_rows(symbol, timeframe, start, end, source, limit, as_known_at)
        else:
            rows = await self._range(kind, symbol, start, end, limit=limit, as_known_at=as_known_at)
        return from_store(kind, rows, micros=True)

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
        """See ``Backend.revisions``."""
        layout = LAYOUTS[kind]
        where = f"symbol = ? AND {layout.time} >= ? AND {layout.time} < ?"
        params: list[Any] = [symbol, _rows.to_micros(start), _rows.to_micros(end)]
        for name, value in (("timeframe", timeframe), ("source", source)):
            if value is not None and name in layout.columns:  # bars (signals: source)
                where += f" AND {name} = ?"
                params.append(value)
        columns = ", ".join(f'"{c}"' for c in layout.columns)
        key = ", ".join(f'"{c}"' for c in layout.key)
        sql = (
            f"SELECT {columns}, ingested_at, NULL FROM {layout.name} WHERE {where}"
            f" UNION ALL SELECT {columns}, ingested_at, superseded_at FROM {layout.history}"
            f" WHERE {where} ORDER BY {key}, ingested_at LIMIT ?"
        )
        rows = await self._fetch(sql, [*params, *params, limit])
        return from_store(kind, rows, micros=True, extra=("ingested_at", "superseded_at"))

    async def purge_history(self, before: datetime) -> int:
        cutoff = _rows.to_micros(before)

        def purge() -> int:
            return sum(
                self._db.execute(
                    f"DELETE FROM {layout.history} WHERE superseded_at < ?", [cutoff]
                ).rowcount
                for layout in LAYOUTS.values()
            )

        return await self._call(purge)

    async def latest_bars(self, timeframe: str, symbols: Sequence[str] | None = None) -> list[Bar]:
        columns = ", ".join(f'b."{c}"' for c in LAYOUTS[Kind.BARS].columns)
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
        for bar in to_models(from_store(Kind.BARS, rows, micros=True), Kind.BARS, trusted=True):
            latest.setdefault(bar.symbol, bar)
        return list(latest.values())

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

    async def delete_before(self, table: str, cutoff: datetime, *, dry_run: bool = False) -> int:
        _check_table(table)
        column = "start" if table == "bars" else "ts"
        micros = _rows.to_micros(cutoff)

        def delete() -> int:
            db = self._db
            if dry_run:
                count = f"SELECT count(*) FROM {table} WHERE {column} < ?"
                return int(db.execute(count, [micros]).fetchone()[0])
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"DELETE FROM {table}_history WHERE {column} < ?", [micros])
                deleted = db.execute(f"DELETE FROM {table} WHERE {column} < ?", [micros]).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return int(deleted)

        return await self._call(delete)

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

"""The PostgreSQL backend: an asyncpg pool, bulk versioned upserts through COPY, and the
store's queries. SQLAlchemy is only for the schema and migrations, never used here.

Write path, per table, in one transaction (``PostgresBackend._write_table``); a write's
records arrive as Arrow tables in the store's layout (``_layout.to_store``):

1. Each row belongs to a series: the leading text columns of its key (the bars of one
   source, symbol and timeframe; the ticks of one symbol; the signals of one source and
   symbol) and the series' time. The backend keeps, per series, an estimate of the newest
   time stored: the newest time it wrote itself, or for a series it has not seen, one
   backward index probe (``max(time)``, all new series of the batch in one query).
2. Append fast path: a row later than everything stored for its series cannot meet a
   stored key, so those rows go straight into the table with binary ``COPY`` (pgpq, from
   the Arrow columns), the fastest way into PostgreSQL, inside a savepoint. When the
   estimate was stale (another process wrote later rows, a concurrent transaction inserted
   one of the keys) or a key comes twice in the batch, the COPY fails with a unique
   violation, the savepoint rolls back, the whole batch takes step 3 and the series are
   probed again next time: correctness never depends on the estimates.
3. The other rows (replays, revisions, late data): the newest version of each key of the
   batch (``latest_per_key``), ``COPY`` into a temporary staging table (``ON COMMIT
   DROP``), then ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE ... WHERE <newer>``
   (``_layout.newer_sql``): the stored row is replaced only by a higher version ``(as_of,
   revision)``, or an equal one with greater values (a conflict, counted), so the outcome
   never depends on the order in which concurrent transactions commit (the row lock
   serialises them and the condition is evaluated against the row as committed). A replay
   changes nothing, not even ``ingested_at``; the trigger keeps a replaced row in
   ``<table>_history``. Ticks of the staging table that have a twin stored before
   nanoseconds (``ts_nanos = -1``) replace it (the twin goes to history).

``ingested_at`` is the transaction's ``now()``, never earlier than the row's previous one.
Failures become ``TransientBackendError``
(connection lost or refused, timeouts, server starting or shutting down, serialization
failures, deadlocks, lock timeouts, too many connections, authentication) or
``PermanentBackendError`` (bad data, constraints, schema; ``InvalidValueError`` when the
server refuses a value, such as text with a NUL character); messages name the server with a
redacted URL and never contain the password. An operation that fails because its pooled
connection died (the server restarted) is retried once on a fresh connection: every
operation here is idempotent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote as url_quote

import asyncpg  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc
from pgpq import ArrowToPostgresBinaryEncoder

from market_data_core import AuditEnvelope, Bar
from market_data_core.columns import Kind, latest_per_key, to_models
from market_data_store.backends import _rows
from market_data_store.backends._layout import (
    LAYOUTS,
    LEGACY_NANOS,
    MICROS,
    ORDER,
    TIES_SETTING,
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
    StoreError,
    TransientBackendError,
)
from market_data_store.timescale import TimescalePlan, TimescaleReport, configure

if TYPE_CHECKING:
    from market_data_store.job_run import JobRun

__all__ = ["PostgresBackend", "WritePathStats"]

T = TypeVar("T")
Row = tuple[Any, ...]

# SQLSTATE classes (first two characters) and codes worth retrying. Authentication (28) and
# a missing database (3D000) are here too: they are not the batch's fault, so dead-lettering
# good data cannot fix them; retries with backoff and the circuit breaker surface them.
_TRANSIENT_CLASSES = frozenset({"08", "28", "40", "53", "57", "58"})
_DATA_CLASSES = frozenset({"21", "22", "23"})  # cardinality, data exception (NUL...), integrity
_TRANSIENT_STATES = frozenset({"3D000", "55P03", "55006"})
_CLOSE_GRACE = 10.0
_ROWS_PER_PROBE = 4  # probe a batch's new series when they average this many rows
_KNOWN_SERIES_LIMIT = 100_000  # per table; forget them all beyond
_NEVER = datetime.max.replace(tzinfo=UTC)  # "assume every row may conflict"
_LEGACY_KINDS = frozenset({Kind.TRADES, Kind.QUOTES})
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError
    asyncpg.AdminShutdownError,  # 57P01: the server is shutting down
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.InterfaceError,  # "connection is closed"
    ConnectionError,  # reset, broken pipe
)


def _q(name: str) -> str:
    return f'"{name}"'


_D = "postgresql"


def _names(layout: Layout) -> str:
    return ", ".join(_q(c) for c in layout.columns)


def _maxima_sql(layout: Layout) -> str:
    series = layout.series
    arrays = ", ".join(f"${i}::text[]" for i in range(1, len(series) + 1))
    match = " AND ".join(f"t.{_q(c)} = s.{_q(c)}" for c in series)
    return (
        f"SELECT now(), s.*, (SELECT max(t.{_q(layout.time)}) FROM {layout.name} t"
        f" WHERE {match}) FROM unnest({arrays}) AS s({', '.join(_q(c) for c in series)})"
    )


def _stage_sql(layout: Layout) -> str:
    return (
        f"CREATE TEMP TABLE _mds_stage_{layout.name} ON COMMIT DROP AS"
        f" SELECT {_names(layout)} FROM {layout.name} WITH NO DATA"
    )


def _upsert_sql(layout: Layout) -> str:
    t = layout.name
    key = ", ".join(_q(c) for c in layout.key)
    updated = [c for c in layout.columns if c not in layout.key]
    sets = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in updated)
    learned = f"ingested_at = GREATEST(EXCLUDED.ingested_at, {t}.ingested_at)"
    return (
        f"INSERT INTO {t} ({_names(layout)}, ingested_at) SELECT {_names(layout)}, now()"
        f" FROM _mds_stage_{t} ON CONFLICT ({key}) DO UPDATE SET {sets}, {learned}"
        f" WHERE {newer_sql(layout, 'EXCLUDED', t, _D)}"
    )


_RESET_TIES = f"SELECT set_config('{TIES_SETTING}', '0', true)"
_READ_TIES = f"SELECT coalesce(nullif(current_setting('{TIES_SETTING}', true), ''), '0')::bigint"


def _legacy_sql(layout: Layout) -> str:
    """Ticks stored before nanoseconds that a staged tick of the same microsecond and
    identity replaces: moved to history, in one statement."""
    t = layout.name
    same = " AND ".join(f"s.{_q(c)} = {t}.{_q(c)}" for c in layout.key if c != "ts_nanos")
    columns = ", ".join(_q(c) for c in (*layout.columns, "ingested_at"))
    return (
        f"WITH gone AS (DELETE FROM {t} USING _mds_stage_{t} s WHERE {t}.ts_nanos ="
        f" {LEGACY_NANOS} AND {same} RETURNING {t}.*) INSERT INTO {layout.history}"
        f" ({columns}, superseded_at) SELECT {columns}, now() FROM gone"
    )


_SQL = {
    kind: (_maxima_sql(layout), _stage_sql(layout), _upsert_sql(layout))
    for kind, layout in LAYOUTS.items()
}
_COPY_CHUNK = 65_536
"""Rows per Arrow record batch encoded for COPY (the encoder's output is sent as it comes)."""


async def _copy_arrow(connection: Any, name: str, data: pa.Table) -> None:
    """Binary COPY of ``data`` (its column names are the table's) into table ``name``."""
    encoder = ArrowToPostgresBinaryEncoder(data.schema)

    async def chunks() -> Any:
        yield encoder.write_header()
        for batch in data.to_batches(max_chunksize=_COPY_CHUNK):
            yield encoder.write_batch(batch)
        yield encoder.finish()

    await connection.copy_to_table(
        name, source=chunks(), columns=data.column_names, format="binary"
    )


def _split_arrow(
    data: pa.Table, names: list[str], fresh: list[Any], series: int
) -> tuple[pa.Table | None, pa.Table | None]:
    """The rows of the ``fresh`` series (of ``series`` in all), and the others."""
    if len(fresh) == series:
        return data, None
    if not fresh:
        return None, data
    if len(names) == 1:
        column, values = data.column(names[0]), pa.array(fresh, pa.string())
    else:  # a multi-column series: its text columns joined by a character none can hold
        column = pc.binary_join_element_wise(*(data.column(n) for n in names), "\x00")
        values = pa.array(["\x00".join(key) for key in fresh], pa.string())
    mask = pc.is_in(column, value_set=values)
    return data.filter(mask), data.filter(pc.invert(mask))


# --- errors ----------------------------------------------------------------------------


def _error_class(exc: BaseException) -> type[StoreError] | None:
    """The store error for an exception out of asyncpg, ``None`` for anything else."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(exc.sqlstate or "")
        if state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES:
            return TransientBackendError
        if state[:2] in _DATA_CLASSES:
            return InvalidValueError
        return PermanentBackendError
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return StoreConfigurationError
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError):
        return TransientBackendError  # OSError includes TimeoutError (command_timeout)
    return None


@dataclass(slots=True)
class WritePathStats:
    """What the writes did since the backend was created (committed or not): rows copied
    straight into their table (append fast path) or upserted through a staging table;
    fast-path COPYs that met an existing key and were upserted instead; series whose
    newest stored time was looked up."""

    appended: int = 0
    upserted: int = 0
    fallbacks: int = 0
    probed_series: int = 0


class PostgresBackend(TableWrites, ModelReads):
    """PostgreSQL behind the ``Backend`` protocol (needs the ``postgres`` extra: asyncpg).

    ``min_size``/``max_size`` bound the pool; each ``write`` uses one connection, so up to
    ``max_size`` writers (the coordinator's workers) write in parallel. ``command_timeout``
    (seconds) bounds every statement, ``connect_timeout`` every connection attempt.
    ``fast_append=False`` sends every row through the staging upsert (step 4 above).
    """

    name = "postgresql"

    def __init__(
        self,
        url: DatabaseUrl,
        *,
        min_size: int = 1,
        max_size: int = 4,
        command_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        fast_append: bool = True,
    ) -> None:
        if url.backend != "postgresql":
            msg = f"PostgresBackend needs a postgresql:// URL, got {url}"
            raise StoreConfigurationError(msg)
        if not 0 <= min_size <= max_size or max_size < 1:
            msg = f"need 0 <= min_size <= max_size and max_size >= 1: {min_size}, {max_size}"
            raise StoreConfigurationError(msg)
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.fast_append = fast_append
        password = url.password
        self._secrets = {password, url_quote(password, safe="")} - {""} if password else set()
        self._pool: Any = None
        self._ping_connection: Any = None
        self.stats = WritePathStats()
        # Per table: series -> a recent estimate of its newest stored time (see step 1).
        self._latest: dict[str, dict[Any, datetime]] = {t: {} for t in DATA_TABLES}
        self._legacy: dict[Kind, bool] = {}  # ticks stored before nanoseconds remain

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self.url.asyncpg_dsn(),
                min_size=self.min_size,
                max_size=self.max_size,
                command_timeout=self.command_timeout,
                timeout=self.connect_timeout,
                server_settings={"application_name": "market-data-store"},
            )
        except Exception as exc:
            raise self._translate(exc, "connect") from self._cause(exc)

    async def close(self) -> None:
        """Close the pool: wait up to ``_CLOSE_GRACE`` seconds for connections in use,
        then terminate them."""
        pool, self._pool = self._pool, None
        self._drop_ping_connection()
        for known in self._latest.values():
            known.clear()
        self._legacy.clear()
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_GRACE)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pool.terminate()

    async def _run(self, operation: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """``work(connection)`` on a pooled connection, errors translated; retried once on a
        fresh connection when the pooled one turns out to be dead."""
        if self._pool is None:
            msg = f"PostgresBackend ({self.url}) is not open: call open() first"
            raise TransientBackendError(msg)
        retried = False
        while True:
            acquired = False
            try:
                async with self._pool.acquire() as connection:
                    acquired = True
                    return await work(connection)
            except Exception as exc:
                if acquired and not retried and isinstance(exc, _CONNECTION_LOST):
                    retried = True
                    continue
                if _error_class(exc) is None:
                    raise
                raise self._translate(exc, operation) from self._cause(exc)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _translate(self, exc: BaseException, operation: str) -> StoreError:
        error = _error_class(exc) or BackendError
        detail = str(exc).strip() or "no message"
        message = f"PostgreSQL {operation} failed at {self.url}: {type(exc).__name__}: {detail}"
        if error is InvalidValueError:
            return InvalidValueError(self._scrub(message), reason=self._scrub(detail))
        return error(self._scrub(message))

    def _cause(self, exc: BaseException) -> BaseException | None:
        """Keep the original exception as the cause unless its text has the password."""
        return exc if self._scrub(str(exc)) == str(exc) else None

    async def configure_timescale(self, plan: TimescalePlan) -> TimescaleReport:
        """Hypertables and policies when TimescaleDB is installed; a no-op report otherwise."""
        return await self._run("timescale", lambda connection: configure(connection, plan))

    async def ping(self) -> None:
        """``SELECT 1`` on a connection of its own, outside the pool: a check of the
        database never queues behind writes that hold every pooled connection."""
        if self._pool is None:
            msg = f"PostgresBackend ({self.url}) is not open: call open() first"
            raise TransientBackendError(msg)
        try:
            if self._ping_connection is None or self._ping_connection.is_closed():
                self._ping_connection = await asyncpg.connect(
                    self.url.asyncpg_dsn(),
                    timeout=self.connect_timeout,
                    command_timeout=self.command_timeout,
                    server_settings={"application_name": "market-data-store-health"},
                )
            await self._ping_connection.fetchval("SELECT 1")
        except asyncio.CancelledError:  # timed out by the caller: mid-query, unusable
            self._drop_ping_connection()
            raise
        except Exception as exc:
            self._drop_ping_connection()
            if _error_class(exc) is None:
                raise
            raise self._translate(exc, "ping") from self._cause(exc)

    def _drop_ping_connection(self) -> None:
        connection, self._ping_connection = self._ping_connection, None
        if connection is not None:
            connection.terminate()

    # --- writes ------------------------------------------------------------------------

    async def write_tables(self, tables: Mapping[Kind, pa.Table]) -> WriteResult:
        """Keep the newest version of each key of ``tables`` (one per kind, see
        ``TableWrites``), in one transaction."""
        as_of = time.time_ns()  # for records that came without a version (direct writes)
        prepared = [
            (LAYOUTS[kind], to_store(kind, table, as_of=as_of))
            for kind, table in tables.items()
            if table.num_rows
        ]
        result = WriteResult()

        async def work(connection: Any) -> None:  # run again on a fresh connection: idempotent
            counts = dict.fromkeys(DATA_TABLES, 0)
            conflicts = 0
            async with connection.transaction():  # the write is one transaction
                for layout, data in prepared:
                    written, tied = await self._write_table(connection, layout, data)
                    counts[layout.name] += written
                    conflicts += tied
            for name, count in counts.items():
                setattr(result, name, count)
            result.conflicts = conflicts

        if prepared or self._pool is None:  # an empty batch still says "not open"
            await self._run("write", work)
        return result

    async def _write_table(
        self, connection: Any, layout: Layout, data: pa.Table
    ) -> tuple[int, int]:
        """Keep the newest version of each key of ``data`` (the store's layout) in its
        table: see the module's docstring for the steps. Returns the rows written (each
        key once) and the conflicts found."""
        if not self.fast_append:
            return await self._upsert(connection, layout, data)
        names = list(layout.series)
        spans = data.group_by(names, use_threads=False).aggregate(
            [(layout.time, "min"), (layout.time, "max")]
        )
        keys = spans.select(names).to_pylist()
        series = [tuple(k[n] for n in names) if len(names) > 1 else k[names[0]] for k in keys]
        lows = spans.column(f"{layout.time}_min").to_pylist()
        conflicted = False
        written = conflicts = 0
        maxima, now = await self._maxima(connection, layout, series, data.num_rows)
        fresh_series = [
            key
            for key, low in zip(series, lows, strict=True)
            if maxima[key] is None or low > maxima[key]
        ]
        fresh, rest = _split_arrow(data, names, fresh_series, len(series))
        if fresh is not None:
            if now is None:
                now = await connection.fetchval("SELECT now()")
            stamp = pa.repeat(pa.scalar(now, MICROS), fresh.num_rows)
            try:
                async with connection.transaction():  # a savepoint
                    await _copy_arrow(
                        connection, layout.name, fresh.append_column("ingested_at", stamp)
                    )
                self.stats.appended += fresh.num_rows
                written = fresh.num_rows
            except asyncpg.UniqueViolationError:  # another writer, or a key twice
                self.stats.fallbacks += 1
                conflicted = True
                rest, written = data, 0
        if rest is not None:
            upserted, conflicts = await self._upsert(connection, layout, rest)
            written += upserted
        highs = spans.column(f"{layout.time}_max").to_pylist()
        self._remember(layout, dict(zip(series, highs, strict=True)), conflicted=conflicted)
        return written, conflicts

    async def _maxima(
        self, connection: Any, layout: Layout, series: Sequence[Any], rows: int
    ) -> tuple[dict[Any, Any], Any]:
        """The newest stored time of each series (``None``: empty; ``_NEVER``: not probed),
        and the transaction's ``now()`` when a probe ran (else ``None``). A probe costs
        about as much per series as upserting a few rows instead of copying them: without
        several rows per new series, their rows are simply upserted."""
        known = self._latest[layout.name]
        maxima = {key: known[key] for key in series if key in known}
        unknown = [key for key in series if key not in maxima]
        if not unknown:
            return maxima, None
        if len(unknown) * _ROWS_PER_PROBE > rows:
            maxima.update(dict.fromkeys(unknown, _NEVER))
            return maxima, None
        width = len(layout.series)
        arrays = [unknown] if width == 1 else list(zip(*unknown, strict=True))
        found = await connection.fetch(_SQL[layout.kind][0], *arrays)
        series_of = itemgetter(*range(width))
        maxima.update((series_of(tuple(record)[1:]), record[-1]) for record in found)
        self.stats.probed_series += len(unknown)
        return maxima, found[0][0]

    def _remember(self, layout: Layout, newest: dict[Any, Any], *, conflicted: bool) -> None:
        """After a write: the newest time written per series. After a conflict, what we
        knew was stale: these series are probed again next time. (A write that rolls back
        later leaves an estimate too high: rows then take the upsert path, still right.)"""
        known = self._latest[layout.name]
        if conflicted:
            for key in newest:
                known.pop(key, None)
            return
        if len(known) > _KNOWN_SERIES_LIMIT:
            known.clear()
        for key, high in newest.items():
            latest = known.get(key)
            if latest is None or latest < high:
                known[key] = high

    async def _upsert(self, connection: Any, layout: Layout, data: pa.Table) -> tuple[int, int]:
        """The newest version of each key of ``data`` through the staging table; returns
        the rows staged and the conflicts (ties within the batch and with stored rows,
        counted by ``mds_tie`` as the upsert meets them)."""
        _, stage_sql, upsert_sql = _SQL[layout.kind]
        latest = latest_per_key(data, layout.kind, keys=layout.key)
        self.stats.upserted += latest.table.num_rows
        await connection.execute(stage_sql)
        await _copy_arrow(connection, f"_mds_stage_{layout.name}", latest.table)
        if layout.kind in _LEGACY_KINDS and await self._has_legacy(connection, layout):
            await connection.execute(_legacy_sql(layout))
        await connection.execute(f"{_RESET_TIES}; {upsert_sql}")  # one round trip
        ties = int(await connection.fetchval(_READ_TIES))
        return latest.table.num_rows, ties + latest.conflicts

    async def _has_legacy(self, connection: Any, layout: Layout) -> bool:
        """Whether ticks stored before nanoseconds remain (asked once per table, through
        the partial index; ``False`` is not asked again)."""
        known = self._legacy.get(layout.kind)
        if known is None:
            sql = f"SELECT EXISTS (SELECT 1 FROM {layout.name} WHERE ts_nanos = {LEGACY_NANOS})"
            known = bool(await connection.fetchval(sql))
            self._legacy[layout.kind] = known
        return known

    # --- queries -----------------------------------------------------------------------

    async def _fetch(self, operation: str, sql: str, *args: Any) -> list[Any]:
        async def work(connection: Any) -> list[Any]:
            return cast("list[Any]", await connection.fetch(sql, *args))

        return await self._run(operation, work)

    async def _select(
        self,
        kind: Kind,
        where: str,
        args: list[Any],
        *,
        limit: int,
        as_known_at: datetime | None,
    ) -> list[Any]:
        """Rows of ``kind`` matching ``where`` (``$1``... are ``args``), current or as known
        at a time (the current rows learned by then and the history rows valid then)."""
        layout = LAYOUTS[kind]
        columns = _names(layout)
        n = len(args)
        if as_known_at is None:
            sql = f"SELECT {columns} FROM {layout.name} WHERE {where}"
        else:
            known = f"${n + 1}"
            sql = (
                f"SELECT {columns} FROM {layout.name} WHERE {where} AND ingested_at <= {known}"
                f" UNION ALL SELECT {columns} FROM {layout.history} WHERE {where}"
                f" AND ingested_at <= {known} AND superseded_at > {known}"
            )
            args = [*args, as_known_at]
        sql += f" ORDER BY {ORDER[kind]} LIMIT ${len(args) + 1}"
        return await self._fetch(f"query_{kind}", sql, *args, limit)

    async def _bar_rows(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        source: str | None,
        limit: int,
        as_known_at: datetime | None = None,
    ) -> list[Any]:
        args: list[Any] = [symbol, timeframe, start, end]
        where = '"symbol" = $1 AND "timeframe" = $2 AND "start" >= $3 AND "start" < $4'
        if source is not None:
            where += ' AND "source" = $5'
            args.append(source)
        return await self._select(Kind.BARS, where, args, limit=limit, as_known_at=as_known_at)

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
        """The rows of ``query_bars``/``query_trades``/``query_quotes`` as an Arrow table
        (core's schema of ``kind``), built column by column."""
        if kind is Kind.BARS:
            assert timeframe is not None, "bars need a timeframe"
            rows = await self._bar_rows(symbol, timeframe, start, end, source, limit, as_known_at)
        else:
            where = '"symbol" = $1 AND "ts" >= $2 AND "ts" < $3'
            rows = await self._select(
                kind, where, [symbol, start, end], limit=limit, as_known_at=as_known_at
            )
        return from_store(kind, rows, micros=False)

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
        args: list[Any] = [symbol, start, end]
        where = f'"symbol" = $1 AND {_q(layout.time)} >= $2 AND {_q(layout.time)} < $3'
        for name, value in (("timeframe", timeframe), ("source", source)):
            if value is not None and name in layout.columns:  # bars (signals: source)
                args.append(value)
                where += f" AND {_q(name)} = ${len(args)}"
        columns = _names(layout)
        key = ", ".join(_q(c) for c in layout.key)
        sql = (
            f"SELECT {columns}, ingested_at, NULL::timestamptz FROM {layout.name} WHERE {where}"
            f" UNION ALL SELECT {columns}, ingested_at, superseded_at FROM {layout.history}"
            f" WHERE {where} ORDER BY {key}, ingested_at LIMIT ${len(args) + 1}"
        )
        rows = await self._fetch("revisions", sql, *args, limit)
        return from_store(kind, rows, micros=False, extra=("ingested_at", "superseded_at"))

    async def purge_history(self, before: datetime) -> int:
        async def work(connection: Any) -> int:
            deleted = 0
            for layout in LAYOUTS.values():
                status = await connection.execute(
                    f"DELETE FROM {layout.history} WHERE superseded_at < $1", before
                )
                deleted += int(str(status).rsplit(" ", 1)[-1])
            return deleted

        return await self._run("purge_history", work)

    async def latest_bars(self, timeframe: str, symbols: Sequence[str] | None = None) -> list[Bar]:
        columns = _names(LAYOUTS[Kind.BARS])
        if symbols is None:
            sql = (
                f'SELECT DISTINCT ON ("symbol") {columns} FROM bars WHERE "timeframe" = $1'
                ' ORDER BY "symbol", "start" DESC, "source"'
            )
            rows = await self._fetch("latest_bars", sql, timeframe)
        else:  # one backward index probe per symbol instead of a scan of their history
            qualified = ", ".join(f"b.{_q(c)}" for c in LAYOUTS[Kind.BARS].columns)
            sql = (
                f"SELECT {qualified} FROM (SELECT DISTINCT unnest($2::text[]) AS symbol) s"
                f" CROSS JOIN LATERAL (SELECT {columns} FROM bars WHERE bars.symbol = s.symbol"
                ' AND "timeframe" = $1 ORDER BY "start" DESC, "source" LIMIT 1) b'
                " ORDER BY b.symbol"
            )
            rows = await self._fetch("latest_bars", sql, timeframe, list(symbols))
        return to_models(from_store(Kind.BARS, rows, micros=False), Kind.BARS, trusted=True)

    async def freshness(self) -> list[Freshness]:
        selects = " UNION ALL ".join(
            f"SELECT {i} AS i, '{layout.name}' AS tbl, symbol, max({_q(layout.time)}) AS latest,"
            f" count(*) AS n FROM {layout.name} GROUP BY symbol"
            for i, layout in enumerate(LAYOUTS.values())
        )
        sql = f"SELECT tbl, symbol, latest, n FROM ({selects}) f ORDER BY i, symbol"
        rows = await self._fetch("freshness", sql)
        return [Freshness(row[0], row[1], row[2], int(row[3])) for row in rows]

    async def schema_revision(self) -> str | None:
        """The migration the database is at (``None``: not migrated), read directly."""

        async def work(connection: Any) -> str | None:
            if await connection.fetchval("SELECT to_regclass('alembic_version')") is None:
                return None
            value = await connection.fetchval("SELECT version_num FROM alembic_version")
            return None if value is None else str(value)

        return await self._run("schema_revision", work)

    async def count(self, table: str) -> int:
        _check_table(table)

        async def work(connection: Any) -> int:
            return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))

        return await self._run("count", work)

    async def delete_before(self, table: str, cutoff: datetime, *, dry_run: bool = False) -> int:
        column = LAYOUTS[Kind(_check_table(table))].time

        async def work(connection: Any) -> int:
            if dry_run:
                count = f"SELECT count(*) FROM {table} WHERE {_q(column)} < $1"
                return int(await connection.fetchval(count, cutoff))
            async with connection.transaction():
                await connection.execute(
                    f"DELETE FROM {table}_history WHERE {_q(column)} < $1", cutoff
                )
                status = await connection.execute(
                    f"DELETE FROM {table} WHERE {_q(column)} < $1", cutoff
                )
            return int(str(status).rsplit(" ", 1)[-1])  # "DELETE 42"

        return await self._run("delete_before", work)

    # --- audit -------------------------------------------------------------------------

    async def record_audit(self, envelope: AuditEnvelope) -> None:
        row = _rows.audit_row(envelope)
        columns = ", ".join(_q(c) for c in _rows.AUDIT_COLUMNS)
        marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
        sql = f"INSERT INTO audit_log ({columns}) VALUES ({marks})"

        async def work(connection: Any) -> None:
            await connection.execute(sql, *row)

        await self._run("record_audit", work)

    async def recent_audit(self, limit: int = 100) -> list[AuditEnvelope]:
        columns = ", ".join(_q(c) for c in _rows.AUDIT_COLUMNS)
        sql = f'SELECT {columns} FROM audit_log ORDER BY "ts" DESC, "id" LIMIT $1'
        rows = await self._fetch("recent_audit", sql, limit)
        return [_rows.audit_from_row(row) for row in rows]

    # --- job runs ----------------------------------------------------------------------

    async def save_job_run(self, run: JobRun) -> None:
        row = _rows.job_row(run)
        columns = ", ".join(_q(c) for c in _rows.JOB_COLUMNS)
        marks = ", ".join(f"${i}" for i in range(1, len(row) + 1))
        updates = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in _rows.JOB_COLUMNS[1:])
        sql = (
            f"INSERT INTO job_runs ({columns}) VALUES ({marks})"
            f' ON CONFLICT ("id") DO UPDATE SET {updates}'
        )

        async def work(connection: Any) -> None:
            await connection.execute(sql, *row)

        await self._run("save_job_run", work)

    async def get_job_run(self, run_id: str) -> JobRun | None:
        sql = f'SELECT {_JOB_SELECT} FROM job_runs WHERE "id" = $1'
        rows = await self._fetch("get_job_run", sql, run_id)
        return _rows.job_from_row(rows[0]) if rows else None

    async def recent_job_runs(self, limit: int = 50, job_name: str | None = None) -> list[JobRun]:
        where, args = ('WHERE "job_name" = $2', [job_name]) if job_name else ("", [])
        sql = (
            f'SELECT {_JOB_SELECT} FROM job_runs {where} ORDER BY "started_at" DESC, "id" LIMIT $1'
        )
        rows = await self._fetch("recent_job_runs", sql, limit, *args)
        return [_rows.job_from_row(row) for row in rows]

    async def stuck_job_runs(self, heartbeat_before: datetime) -> list[JobRun]:
        sql = (
            f"SELECT {_JOB_SELECT} FROM job_runs WHERE \"status\" = 'running'"
            ' AND "heartbeat_at" < $1 ORDER BY "heartbeat_at", "id"'
        )
        rows = await self._fetch("stuck_job_runs", sql, heartbeat_before)
        return [_rows.job_from_row(row) for row in rows]


_JOB_SELECT = ", ".join(_q(c) for c in _rows.JOB_COLUMNS)


def _check_table(table: str) -> str:
    if table not in DATA_TABLES:
        msg = f"unknown table {table!r}; one of {', '.join(DATA_TABLES)}"
        raise StoreConfigurationError(msg)
    return table

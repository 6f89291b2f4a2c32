"""The PostgreSQL backend: an asyncpg pool, bulk idempotent upserts through COPY, and the
store's queries. SQLAlchemy is only for the schema and migrations, never used here.

Write path, per table, in one transaction (``PostgresBackend._write_table``):

1. Before a connection is taken, rows are built from the models in one pass and
   deduplicated by key in Python (the last occurrence wins), so no statement ever sees a
   key twice.
2. Each row belongs to a series: its key without the time and what follows (the bars of
   one source, symbol and timeframe; the trades or quotes of one symbol; the signals of one
   source and symbol). The backend keeps, per series, an estimate of the newest time
   stored: the newest time it wrote itself, or for a series it has not seen, one backward
   index probe (``max(time)``, all new series of the batch in one query).
3. Append fast path: a row later than everything stored for its series cannot conflict, so
   those rows go straight into the table with binary ``COPY``, the fastest way into
   PostgreSQL, inside a savepoint. When the estimate was stale (another process wrote
   later rows, or a concurrent transaction inserted one of the keys), the COPY fails with a
   unique violation, the savepoint rolls back, the whole batch takes step 4 and the series
   are probed again next time: correctness never depends on the estimates.
4. The other rows (replays, revisions, late data): ``COPY`` into a temporary staging table
   (``ON COMMIT DROP``, so successive batches on one connection never collide), then
   ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE ... WHERE (stored values) IS
   DISTINCT FROM (new values)``: a replay changes nothing, not even ``ingested_at``; a newer
   revision replaces the row.

``ingested_at`` is the transaction's ``now()``. Failures become ``TransientBackendError``
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
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote as url_quote

import asyncpg  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc
from pgpq import ArrowToPostgresBinaryEncoder

from market_data_core import AuditEnvelope, Bar, Quote, Signal, Trade
from market_data_store import columnar as _columnar
from market_data_store.backends import _rows
from market_data_store.backends._columns import last_per_key, rows_to_table, split_columnar
from market_data_store.backends.base import (
    DATA_TABLES,
    Freshness,
    Record,
    WriteResult,
    split_records,
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
    from market_data_store.jobs import JobRun

__all__ = ["PostgresBackend", "WritePathStats"]

T = TypeVar("T")
Row = tuple[Any, ...]

# SQLSTATE classes (first two characters) and codes worth retrying. Authentication (28) and
# a missing database (3D000) are here too: they are not the batch's fault, so dead-lettering
# good data cannot fix them; retries with backoff and the circuit breaker surface them.
_TRANSIENT_CLASSES = frozenset({"08", "28", "40", "53", "57", "58"})
_DATA_CLASSES = frozenset({"22", "23"})  # data exception (NUL in text...), integrity (CHECK)
_TRANSIENT_STATES = frozenset({"3D000", "55P03", "55006"})
_CLOSE_GRACE = 10.0
_ROWS_PER_PROBE = 4  # probe a batch's new series when they average this many rows
_KNOWN_SERIES_LIMIT = 100_000  # per table; forget them all beyond
_NEVER = datetime.max.replace(tzinfo=UTC)  # "assume every row may conflict"
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError
    asyncpg.AdminShutdownError,  # 57P01: the server is shutting down
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.InterfaceError,  # "connection is closed"
    ConnectionError,  # reset, broken pipe
)


def _q(name: str) -> str:
    return f'"{name}"'


@dataclass(frozen=True, slots=True)
class _Table:
    """A data table: its key is its first ``key_width`` columns; a series is its first
    ``series_width`` columns (all text) and the column after them is the series' time."""

    name: str
    columns: tuple[str, ...]
    key_width: int
    series_width: int
    order: str  # ORDER BY of range queries

    @property
    def time(self) -> str:
        return self.columns[self.series_width]

    @property
    def stage(self) -> str:
        return f"_mds_stage_{self.name}"

    @property
    def copy_columns(self) -> tuple[str, ...]:
        return (*self.columns, "ingested_at")

    def maxima_sql(self) -> str:
        series = self.columns[: self.series_width]
        arrays = ", ".join(f"${i}::text[]" for i in range(1, len(series) + 1))
        match = " AND ".join(f"t.{_q(c)} = s.{_q(c)}" for c in series)
        return (
            f"SELECT now(), s.*, (SELECT max(t.{_q(self.time)}) FROM {self.name} t WHERE {match})"
            f" FROM unnest({arrays}) AS s({', '.join(_q(c) for c in series)})"
        )

    def stage_sql(self) -> str:
        columns = ", ".join(_q(c) for c in self.columns)
        return (
            f"CREATE TEMP TABLE {self.stage} ON COMMIT DROP AS"
            f" SELECT {columns} FROM {self.name} WITH NO DATA"
        )

    def upsert_sql(self) -> str:
        columns = ", ".join(_q(c) for c in self.columns)
        key = ", ".join(_q(c) for c in self.columns[: self.key_width])
        values = self.columns[self.key_width :]
        updates = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in values)
        stored = ", ".join(f"{self.name}.{_q(c)}" for c in values)
        new = ", ".join(f"EXCLUDED.{_q(c)}" for c in values)
        return (
            f"INSERT INTO {self.name} ({columns}, ingested_at) SELECT {columns}, now()"
            f" FROM {self.stage} ON CONFLICT ({key}) DO UPDATE SET {updates},"
            f" ingested_at = EXCLUDED.ingested_at WHERE ({stored}) IS DISTINCT FROM ({new})"
        )


BARS = _Table("bars", _rows.BAR_COLUMNS, len(_rows.BAR_KEY), 3, '"start", "source"')
TRADES = _Table(
    "trades", _rows.TRADE_COLUMNS, len(_rows.TRADE_KEY), 1, '"ts", "trade_id", "price", "size"'
)
QUOTES = _Table("quotes", _rows.QUOTE_COLUMNS, len(_rows.QUOTE_KEY), 1, '"ts", "exchange"')
SIGNALS = _Table("signals", _rows.SIGNAL_COLUMNS, len(_rows.SIGNAL_KEY), 2, '"ts", "name"')
_SQL = {
    table.name: (table.maxima_sql(), table.stage_sql(), table.upsert_sql())
    for table in (BARS, TRADES, QUOTES, SIGNALS)
}


# --- rows ------------------------------------------------------------------------------
# The same tuples as ``_rows.bar_row`` & co., deduplicated by key (the last occurrence
# wins, in first-seen key order) in the same pass. Field values are read from the models'
# ``__dict__``, where pydantic keeps them: about a third of the cost of attribute access,
# which matters at hundreds of thousands of rows per second (see bench/bench_store.py).


def _bar_rows(bars: Iterable[Bar]) -> list[Row]:
    names: dict[int, str] = {}  # id(timeframe) -> "1m"; the bars keep their timeframes alive
    latest: dict[Row, Row] = {}
    for bar in bars:
        v = bar.__dict__
        timeframe = v["timeframe"]
        name = names.get(id(timeframe))
        if name is None:
            name = names[id(timeframe)] = str(timeframe)
        source, symbol, start = v["source"], v["symbol"], v["start"]
        latest[source, symbol, name, start] = (
            source, symbol, name, start, v["open"], v["high"], v["low"], v["close"],
            v["volume"], v["trade_count"], v["vwap"],
        )  # fmt: skip
    return list(latest.values())


def _trade_rows(trades: Iterable[Trade]) -> list[Row]:
    latest: dict[Row, Row] = {}
    for trade in trades:
        v = trade.__dict__
        symbol, ts, trade_id, price, size = (
            v["symbol"], v["ts"], v["trade_id"] or "", v["price"], v["size"],
        )  # fmt: skip
        side, conditions = v["side"], v["conditions"]
        latest[symbol, ts, trade_id, price, size] = (
            symbol, ts, trade_id, price, size, v["exchange"],
            None if side is None else str(side),
            json.dumps(list(conditions)) if conditions else None,
        )  # fmt: skip
    return list(latest.values())


def _quote_rows(quotes: Iterable[Quote]) -> list[Row]:
    latest: dict[Row, Row] = {}
    for quote in quotes:
        v = quote.__dict__
        symbol, ts, exchange = v["symbol"], v["ts"], v["exchange"] or ""
        latest[symbol, ts, exchange] = (
            symbol, ts, exchange, v["bid"], v["ask"], v["bid_size"], v["ask_size"],
        )  # fmt: skip
    return list(latest.values())


def _signal_rows(signals: Iterable[Signal]) -> list[Row]:
    width = len(_rows.SIGNAL_KEY)
    return list({row[:width]: row for row in map(_rows.signal_row, signals)}.values())


_TABLES = {
    _columnar.Kind.BARS: BARS,
    _columnar.Kind.TRADES: TRADES,
    _columnar.Kind.QUOTES: QUOTES,
    _columnar.Kind.SIGNALS: SIGNALS,
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


def _split_fresh(
    rows: list[Row], series_of: Callable[[Row], Any], time: int, maxima: dict[Any, Any]
) -> tuple[list[Row], list[Row]]:
    """Rows later than the stored maximum of their series (they cannot conflict), and the
    others. ``maxima`` maps every series of ``rows`` to its maximum (``None``: empty)."""
    stored = [latest for latest in maxima.values() if latest is not None]
    if not stored or max(stored) < min(map(itemgetter(time), rows)):
        return rows, []  # the common case of appends, without a per-row loop
    fresh: list[Row] = []
    rest: list[Row] = []
    for row in rows:
        latest = maxima[series_of(row)]
        (fresh if latest is None or row[time] > latest else rest).append(row)
    return fresh, rest


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


class PostgresBackend:
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
        # Per table: series -> a recent estimate of its newest stored time (see step 2).
        self._latest: dict[str, dict[Any, datetime]] = {t: {} for t in DATA_TABLES}

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

    async def write(self, records: Sequence[Record]) -> WriteResult:
        columnar = split_columnar(records, dedupe=False)  # see _write_arrow
        split = split_records(columnar.models)
        batches = [
            (table, rows)
            for table, rows in (
                (BARS, _bar_rows(split.bars)),
                (TRADES, _trade_rows(split.trades)),
                (QUOTES, _quote_rows(split.quotes)),
                (SIGNALS, _signal_rows(split.signals)),
            )
            if rows
        ]
        tables = [(_TABLES[kind], data) for kind, data in columnar.tables.items() if data.num_rows]

        result = WriteResult()

        async def work(connection: Any) -> None:  # run again on a fresh connection: idempotent
            counts = dict.fromkeys(DATA_TABLES, 0)
            for table, rows in batches:
                await self._write_table(connection, table, rows)
                counts[table.name] += len(rows)
            for table, data in tables:
                counts[table.name] += await self._write_arrow(connection, table, data)
            for name, count in counts.items():
                setattr(result, name, count)

        if batches or tables or self._pool is None:  # an empty batch still says "not open"
            await self._run("write", work)
        return result

    async def _write_arrow(self, connection: Any, table: _Table, data: pa.Table) -> int:
        """Upsert an Arrow table in the store's layout (see ``_columns``) into ``table`` in
        one transaction, by binary COPY straight from its columns (pgpq): the steps of
        ``_write_table``, deciding per series instead of per row. Keys that come twice are
        dropped (the last one wins) only on the way to the staging table: the append path
        fails on them anyway. Returns the rows written (each key once)."""
        if not self.fast_append:
            async with connection.transaction():
                return await self._upsert_arrow(connection, table, data)
        names = list(table.columns[: table.series_width])
        spans = data.group_by(names, use_threads=False).aggregate(
            [(table.time, "min"), (table.time, "max")]
        )
        keys = spans.select(names).to_pylist()
        series = [tuple(k[n] for n in names) if len(names) > 1 else k[names[0]] for k in keys]
        lows = spans.column(f"{table.time}_min").to_pylist()
        conflicted = False
        written = 0
        async with connection.transaction():
            maxima, now = await self._maxima(connection, table, series, data.num_rows)
            fresh_series = [
                key
                for key, low in zip(series, lows, strict=True)
                if maxima[key] is None or low > maxima[key]
            ]
            fresh, rest = _split_arrow(data, names, fresh_series, len(series))
            if fresh is not None:
                if now is None:
                    now = await connection.fetchval("SELECT now()")
                stamp = pa.repeat(pa.scalar(now, _columnar.TIMESTAMP), fresh.num_rows)
                try:
                    async with connection.transaction():  # a savepoint
                        await _copy_arrow(
                            connection, table.name, fresh.append_column("ingested_at", stamp)
                        )
                    self.stats.appended += fresh.num_rows
                    written = fresh.num_rows
                except asyncpg.UniqueViolationError:  # another writer, or a key twice
                    self.stats.fallbacks += 1
                    conflicted = True
                    rest = data
            if rest is not None:
                written += await self._upsert_arrow(connection, table, rest)
        highs = spans.column(f"{table.time}_max").to_pylist()
        self._remember(table, dict(zip(series, highs, strict=True)), conflicted=conflicted)
        return written

    async def _maxima(
        self, connection: Any, table: _Table, series: Sequence[Any], rows: int
    ) -> tuple[dict[Any, Any], Any]:
        """The newest stored time of each series (``None``: empty; ``_NEVER``: not probed),
        and the transaction's ``now()`` when a probe ran (else ``None``). A probe costs
        about as much per series as upserting a few rows instead of copying them: without
        several rows per new series, their rows are simply upserted."""
        known = self._latest[table.name]
        maxima = {key: known[key] for key in series if key in known}
        unknown = [key for key in series if key not in maxima]
        if not unknown:
            return maxima, None
        if len(unknown) * _ROWS_PER_PROBE > rows:
            maxima.update(dict.fromkeys(unknown, _NEVER))
            return maxima, None
        width = table.series_width
        arrays = [unknown] if width == 1 else list(zip(*unknown, strict=True))
        found = await connection.fetch(_SQL[table.name][0], *arrays)
        series_of = itemgetter(*range(width))
        maxima.update((series_of(tuple(record)[1:]), record[-1]) for record in found)
        self.stats.probed_series += len(unknown)
        return maxima, found[0][0]

    def _remember(self, table: _Table, newest: dict[Any, Any], *, conflicted: bool) -> None:
        """After a commit: the newest time written per series. After a conflict, what we
        knew was stale: these series are probed again next time."""
        known = self._latest[table.name]
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

    async def _upsert_arrow(self, connection: Any, table: _Table, data: pa.Table) -> int:
        _, stage_sql, upsert_sql = _SQL[table.name]
        data = last_per_key(_columnar.Kind(table.name), data)
        self.stats.upserted += data.num_rows
        await connection.execute(stage_sql)
        await _copy_arrow(connection, table.stage, data)
        await connection.execute(upsert_sql)
        return int(data.num_rows)

    async def _write_table(self, connection: Any, table: _Table, rows: list[Row]) -> None:
        """Upsert ``rows`` (deduplicated) into ``table`` in one transaction: see the module's
        docstring for the steps."""
        if not self.fast_append:
            async with connection.transaction():
                await self._upsert(connection, table, rows)
            return
        width = table.series_width
        series_of = itemgetter(*range(width))  # the series of a row; a scalar when width is 1
        series = set(map(series_of, rows))
        conflicted = False
        async with connection.transaction():
            maxima, now = await self._maxima(connection, table, list(series), len(rows))
            fresh, rest = _split_fresh(rows, series_of, width, maxima)
            if fresh:
                if now is None:
                    now = await connection.fetchval("SELECT now()")
                tail = (now,)
                try:
                    async with connection.transaction():  # a savepoint
                        await connection.copy_records_to_table(
                            table.name,
                            records=(row + tail for row in fresh),
                            columns=table.copy_columns,
                        )
                    self.stats.appended += len(fresh)
                except asyncpg.UniqueViolationError:  # another writer got there first
                    self.stats.fallbacks += 1
                    conflicted = True
                    rest = rows
            if rest:
                await self._upsert(connection, table, rest)
        newest = max(map(itemgetter(width), rows))
        self._remember(table, dict.fromkeys(series, newest), conflicted=conflicted)

    async def _upsert(self, connection: Any, table: _Table, rows: list[Row]) -> None:
        _, stage_sql, upsert_sql = _SQL[table.name]
        self.stats.upserted += len(rows)
        await connection.execute(stage_sql)
        await connection.copy_records_to_table(table.stage, records=rows, columns=table.columns)
        await connection.execute(upsert_sql)

    # --- queries -----------------------------------------------------------------------

    async def _fetch(self, operation: str, sql: str, *args: Any) -> list[Any]:
        async def work(connection: Any) -> list[Any]:
            return cast("list[Any]", await connection.fetch(sql, *args))

        return await self._run(operation, work)

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
        return [_rows.bar_from_row(row) for row in rows]

    async def _bar_rows(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        source: str | None,
        limit: int,
    ) -> list[Any]:
        columns = ", ".join(_q(c) for c in BARS.columns)
        args: list[Any] = [symbol, timeframe, start, end, limit]
        where = '"symbol" = $1 AND "timeframe" = $2 AND "start" >= $3 AND "start" < $4'
        if source is not None:
            where += ' AND "source" = $6'
            args.append(source)
        sql = f"SELECT {columns} FROM bars WHERE {where} ORDER BY {BARS.order} LIMIT $5"
        return await self._fetch("query_bars", sql, *args)

    async def query_table(
        self,
        kind: _columnar.Kind,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        timeframe: str | None = None,
        source: str | None = None,
        limit: int = 1000,
    ) -> pa.Table:
        """The rows of ``query_bars``/``query_trades``/``query_quotes`` as an Arrow table
        (``columnar`` schemas), built column by column."""
        if kind is _columnar.Kind.BARS:
            assert timeframe is not None, "bars need a timeframe"
            rows = await self._bar_rows(symbol, timeframe, start, end, source, limit)
        else:
            rows = await self._range(_TABLES[kind], symbol, start, end, limit)
        return rows_to_table(kind, rows, micros=False)

    async def latest_bars(self, timeframe: str, symbols: Sequence[str] | None = None) -> list[Bar]:
        columns = ", ".join(_q(c) for c in BARS.columns)
        if symbols is None:
            sql = (
                f'SELECT DISTINCT ON ("symbol") {columns} FROM bars WHERE "timeframe" = $1'
                ' ORDER BY "symbol", "start" DESC, "source"'
            )
            rows = await self._fetch("latest_bars", sql, timeframe)
        else:  # one backward index probe per symbol instead of a scan of their history
            qualified = ", ".join(f"b.{_q(c)}" for c in BARS.columns)
            sql = (
                f"SELECT {qualified} FROM (SELECT DISTINCT unnest($2::text[]) AS symbol) s"
                f" CROSS JOIN LATERAL (SELECT {columns} FROM bars WHERE bars.symbol = s.symbol"
                ' AND "timeframe" = $1 ORDER BY "start" DESC, "source" LIMIT 1) b'
                " ORDER BY b.symbol"
            )
            rows = await self._fetch("latest_bars", sql, timeframe, list(symbols))
        return [_rows.bar_from_row(row) for row in rows]

    async def query_trades(
        self, symbol: str, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Trade]:
        rows = await self._range(TRADES, symbol, start, end, limit)
        return [_rows.trade_from_row(row) for row in rows]

    async def query_quotes(
        self, symbol: str, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Quote]:
        rows = await self._range(QUOTES, symbol, start, end, limit)
        return [_rows.quote_from_row(row) for row in rows]

    async def _range(
        self, table: _Table, symbol: str, start: datetime, end: datetime, limit: int
    ) -> list[Any]:
        columns = ", ".join(_q(c) for c in table.columns)
        sql = (
            f'SELECT {columns} FROM {table.name} WHERE "symbol" = $1 AND "ts" >= $2'
            f' AND "ts" < $3 ORDER BY {table.order} LIMIT $4'
        )
        return await self._fetch(f"query_{table.name}", sql, symbol, start, end, limit)

    async def freshness(self) -> list[Freshness]:
        selects = " UNION ALL ".join(
            f"SELECT {i} AS i, '{table.name}' AS tbl, symbol, max({_q(table.time)}) AS latest,"
            f" count(*) AS n FROM {table.name} GROUP BY symbol"
            for i, table in enumerate((BARS, TRADES, QUOTES, SIGNALS))
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

    async def delete_before(self, table: str, cutoff: datetime) -> int:
        column = {t.name: t.time for t in (BARS, TRADES, QUOTES, SIGNALS)}[_check_table(table)]

        async def work(connection: Any) -> int:
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
        return cast("JobRun", _rows.job_from_row(rows[0])) if rows else None

    async def recent_job_runs(self, limit: int = 50, job_name: str | None = None) -> list[JobRun]:
        where, args = ('WHERE "job_name" = $2', [job_name]) if job_name else ("", [])
        sql = (
            f'SELECT {_JOB_SELECT} FROM job_runs {where} ORDER BY "started_at" DESC, "id" LIMIT $1'
        )
        rows = await self._fetch("recent_job_runs", sql, limit, *args)
        return [cast("JobRun", _rows.job_from_row(row)) for row in rows]

    async def stuck_job_runs(self, heartbeat_before: datetime) -> list[JobRun]:
        sql = (
            f"SELECT {_JOB_SELECT} FROM job_runs WHERE \"status\" = 'running'"
            ' AND "heartbeat_at" < $1 ORDER BY "heartbeat_at", "id"'
        )
        rows = await self._fetch("stuck_job_runs", sql, heartbeat_before)
        return [cast("JobRun", _rows.job_from_row(row)) for row in rows]


_JOB_SELECT = ", ".join(_q(c) for c in _rows.JOB_COLUMNS)


def _check_table(table: str) -> str:
    if table not in DATA_TABLES:
        msg = f"unknown table {table!r}; one of {', '.join(DATA_TABLES)}"
        raise StoreConfigurationError(msg)
    return table

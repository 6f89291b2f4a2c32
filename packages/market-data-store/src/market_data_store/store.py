"""The in-process store: a backend, its write coordinator, feedback and health in one object.

>>> async with Store(StoreSettings(database_url="sqlite:///./md.db")) as store:  # doctest: +SKIP
...     await store.submit(bars)           # queued; durable once the coordinator flushes
...     await store.flush()                # or stop(drain=True), which flushes everything
...     latest = await store.latest_bars("1m")

The HTTP service and the ``mds`` CLI are thin layers over this class; pipelines can use it
directly (no server) or the HTTP client.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import pyarrow as pa
import structlog

from market_data_core import (
    BackpressureLevel,
    Bar,
    FeedbackEvent,
    FeedbackPublisher,
    HealthComponent,
    HealthState,
    HealthStatus,
    InMemoryFeedbackBus,
    Quote,
    Trade,
    clamp_utc,
)
from market_data_core.transports.fanout import FeedbackFanOut
from market_data_store.backends.base import Backend, Freshness, Record, WriteResult
from market_data_store.columnar import ArrowRecords, Kind, Stamper, conform, kind_of, prepare
from market_data_store.coordinator import CoordinatorState, WriteCoordinator
from market_data_store.dlq import FileDeadLetterStore
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import (
    BackendError,
    TransientBackendError,
)
from market_data_store.read.query import check_known_at
from market_data_store.receipts import WriteReceipt
from market_data_store.retry import BreakerState, CircuitBreaker, RetryPolicy
from market_data_store.settings import StoreSettings
from market_data_store.timescale import TimescalePlan, TimescaleReport
from market_data_store.watermarks import Watermarks

__all__ = ["Store", "make_backend"]

logger = structlog.get_logger(__name__)
SERVICE = "market-data-store"
_CONNECT_BACKOFF = (0.25, 10.0)
"""First and longest wait (seconds) between attempts to reach the database at start."""
_PING_TIMEOUT = 2.0
"""Seconds a database check may take before it counts as failed."""
_PURGE_EVERY = 3600.0
"""Seconds between purges of history older than ``history_retention_days``."""


def make_backend(url: DatabaseUrl) -> Backend:
    """The backend for a database URL (PostgreSQL needs the ``postgres`` extra)."""
    if url.is_sqlite:
        from market_data_store.backends.sqlite import SqliteBackend  # noqa: PLC0415

        return SqliteBackend(url)
    url.require_driver()
    from market_data_store.backends.postgres import PostgresBackend  # noqa: PLC0415

    return PostgresBackend(url)


class _TimedWriter:
    """The backend's ``write``, timed: each observer gets the seconds of every attempt
    (failed ones too), so a slow or failing database shows in the write latency."""

    def __init__(
        self, backend: Backend, observers: list[Callable[[float], None]], rows: WriteResult
    ) -> None:
        self._backend, self._observers, self.rows = backend, observers, rows

    async def write(self, records: Sequence[Record]) -> WriteResult:
        started = time.perf_counter()
        try:
            result = await self._backend.write(records)
            self.rows += result
            if result.conflicts:
                logger.warning(
                    "versions tied: equal as_of and revision with other values; the greater"
                    " values were kept (give each version its own as_of or revision)",
                    keys=result.conflicts,
                    backend=self._backend.name,
                )
            return result
        finally:
            elapsed = time.perf_counter() - started
            for observe in self._observers:
                observe(elapsed)


class Store:
    """Backend + write coordinator + feedback + health."""

    def __init__(
        self,
        settings: StoreSettings | None = None,
        *,
        backend: Backend | None = None,
        publishers: Sequence[FeedbackPublisher] = (),
    ) -> None:
        self.settings = settings or StoreSettings()
        self.url = self.settings.database
        self.backend = backend or make_backend(self.url)
        self.bus = InMemoryFeedbackBus(ttl=max(3 * self.settings.heartbeat_interval, 1.0))
        self._redis: Any = None
        self._publishers: list[FeedbackPublisher] = [self.bus, *publishers]
        self.write_observers: list[Callable[[float], None]] = []
        """Called with the seconds of each batch write attempt (the service's metrics)."""
        self.dead_letters = FileDeadLetterStore(self.settings.dead_letter_path)
        self.rows_upserted = WriteResult()
        """Rows the database upserted, per table, since this store was made (a key repeated
        within one batch counts once, so this can be less than the records written), and
        the version conflicts met (``WriteResult.conflicts``)."""
        self.stamper = Stamper()
        """Versions of records that come without one: the time they were received."""
        self._purger: asyncio.Task[None] | None = None
        self.coordinator = self._make_coordinator()
        self.timescale: TimescaleReport | None = None
        """What TimescaleDB setup found (PostgreSQL only; ``version`` None: not installed)."""
        self._started = False
        self._stopping: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._database: HealthComponent | None = None  # the watcher's last answer
        self._checking_since: float | None = None  # when the watcher's check in flight began
        self._connecting: asyncio.Task[None] | None = None
        self._unreached: str | None = None
        """Why the database could not be reached, while ``start`` keeps connecting."""
        """The last background check of the database: when (monotonic) and what it found."""

    def _make_coordinator(self) -> WriteCoordinator:
        s = self.settings
        return WriteCoordinator(
            _TimedWriter(self.backend, self.write_observers, self.rows_upserted),
            coordinator_id=s.coordinator_id,
            capacity=s.queue_capacity,
            workers=s.workers,
            batch_size=s.batch_size,
            flush_interval=s.flush_interval,
            watermarks=Watermarks(
                high=s.high_watermark, low=s.low_watermark, soft=s.soft_watermark
            ),
            overflow=s.overflow,
            retry=RetryPolicy(attempts=s.retry_attempts),
            breaker=CircuitBreaker(s.breaker_threshold, s.breaker_reset_seconds),
            dead_letters=self.dead_letters,
            publisher=FeedbackFanOut(self._publishers),
            heartbeat_interval=s.heartbeat_interval,
            on_outage=s.on_outage,
        )

    async def start(self, *, migrate: bool = False, wait_for_database: bool = False) -> None:
        """Open the backend (optionally migrating first), start feedback, the workers and
        the background health checks. A dead-letter file that cannot be written is logged
        and makes the store unhealthy (it does not stop the start).

        ``wait_for_database``: when the database cannot be reached (a transient error), do
        not raise: return at once, unready (``health`` unhealthy, ``unavailable`` says why,
        reads answer ``TransientBackendError``), and keep connecting in the background with
        backoff and jitter; the store starts once the database answers. A service under
        an orchestrator comes up and reports not ready instead of exiting into a restart
        loop."""
        if self._started or self._connecting is not None:
            return
        try:
            await self.backend.open()
        except TransientBackendError as exc:
            if not wait_for_database:
                raise
            self._unreached = str(exc)
            logger.error(
                "the database cannot be reached: serving unready, connecting in the background",
                database=str(self.url),
                error=self._unreached,
            )
            self._connecting = asyncio.get_running_loop().create_task(
                self._connect(migrate), name="store-connect"
            )
            return
        await self._start_open(migrate)

    async def _connect(self, migrate: bool) -> None:
        """Open the backend until it works (exponential backoff with jitter, at most
        ``_CONNECT_BACKOFF[1]`` seconds apart), then start."""
        delay = _CONNECT_BACKOFF[0]
        while True:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            try:
                await self.backend.open()
                await self._start_open(migrate)
            except TransientBackendError as exc:
                await self.backend.close()
                self._unreached = str(exc)
                delay = min(delay * 2, _CONNECT_BACKOFF[1])
                continue
            except Exception as exc:
                self._unreached = f"{type(exc).__name__}: {exc}"
                logger.exception("the store could not start once the database answered")
                raise
            self._unreached = None
            logger.info("the database answers: the store is ready", database=str(self.url))
            return

    async def _start_open(self, migrate: bool) -> None:
        if migrate and not await self._at_head():
            from market_data_store.migrate import upgrade  # noqa: PLC0415 - Alembic is slow to import

            await upgrade(self.url)
        await self._configure_timescale()
        if self.settings.redis_url is not None:
            await self._start_redis(self.settings.redis_url.get_secret_value())
        problem = await self.dead_letters.check()
        if problem is not None:
            logger.error(
                "the dead-letter file cannot be written: batches that fail would be lost",
                path=str(self.dead_letters.path),
                error=problem,
            )
        await self.coordinator.start()
        self._started = True
        self._stopping = None
        self._database = await self._database_health()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="store-health")
        self._purger = asyncio.get_running_loop().create_task(self._purge(), name="store-purge")
        logger.info("store started", backend=self.backend.name, database=str(self.url))

    async def _at_head(self) -> bool:
        """Whether the database is at the newest migration already (then starting needs no
        Alembic: a ``mdp run`` into a migrated store starts about half a second sooner)."""
        from market_data_store.migrations import HEAD  # noqa: PLC0415

        read = getattr(self.backend, "schema_revision", None)
        if read is None:  # a backend of one's own
            return False
        try:
            return bool(await read() == HEAD)
        except BackendError:
            return False

    async def _configure_timescale(self) -> None:
        configure = getattr(self.backend, "configure_timescale", None)
        if configure is None:  # SQLite
            return
        s = self.settings
        plan = TimescalePlan(
            chunk_interval=s.timescale_chunk_interval,
            compress_after=s.timescale_compress_after,
            retention=s.timescale_retention,
        )
        self.timescale = await configure(plan)

    async def _start_redis(self, url: str) -> None:
        from market_data_core.transports.redis import RedisFeedbackPublisher  # noqa: PLC0415

        self._redis = RedisFeedbackPublisher.from_url(
            url,
            stream=self.settings.feedback_stream,
            heartbeat_interval=None,  # the coordinator's heartbeat republishes through it
        )
        await self._redis.start()
        self._publishers.append(self._redis)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop accepting, flush what was accepted (``drain``, for at most
        ``settings.drain_timeout`` seconds, then the rest is dead-lettered), close
        everything. Concurrent calls all return once the first one has finished."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            if not self._started:  # never connected: nothing accepted, nothing to drain
                await self.backend.close()
                return
        if self._stopping is None:
            if not self._started:
                return
            self._stopping = asyncio.get_running_loop().create_task(self._stop(drain))
        await asyncio.shield(self._stopping)

    async def _stop(self, drain: bool) -> None:
        self._started = False
        purger, self._purger = self._purger, None
        if purger is not None:
            purger.cancel()
            await asyncio.gather(purger, return_exceptions=True)
        watcher, self._watcher = self._watcher, None
        while watcher is not None and not watcher.done():
            # again until it ends: a cancellation that lands as a check completes can be
            # lost (asyncio.wait_for in Python 3.11); the loop also ends on _started
            watcher.cancel()
            await asyncio.wait({watcher}, timeout=0.5)
        await self.coordinator.stop(drain=drain, drain_timeout=self.settings.drain_timeout)
        if self._redis is not None:
            await self._redis.aclose()
            self._publishers.remove(self._redis)
            self._redis = None
        await self.bus.aclose()
        await self.backend.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(drain=True)

    # -- writes -------------------------------------------------------------------------

    async def submit(self, records: Sequence[Record]) -> int:
        """Queue records for writing; returns how many were accepted."""
        await self.submit_many(records)
        return len(records)

    async def submit_many(self, records: Sequence[Record] | ArrowRecords) -> WriteReceipt:
        """Queue records (or an ``ArrowRecords`` table that ``conform`` checked) for
        writing; ``await receipt.wait()`` tells what became of each (written,
        dead-lettered, refused by the database).

        Where records enter the store they get what they lack (``columnar.prepare``): a
        record without ``as_of`` is versioned with the time it was received (later in the
        call is newer), ticks without a venue id and without an ``ordinal`` get their
        ordinal among the call's ticks. The store keeps the newest version of every key."""
        if not isinstance(records, ArrowRecords):
            records = list(records)
        return await self.coordinator.submit_many(prepare(records, self.stamper))

    async def submit_arrow(self, table: pa.Table, kind: Kind | str | None = None) -> WriteReceipt:
        """Queue an Arrow table of one kind (``bars``, ``trades``, ``quotes``, ``signals``;
        told by its columns when ``kind`` is None) without a model per row: it is checked
        column by column against the models' rules (``ColumnError`` names the first bad
        row and column; nothing of a bad table is queued), then travels as columns to the
        database (binary COPY on PostgreSQL). The receipt's indexes are the table's rows."""
        conformed = conform(table, kind)
        kind = kind_of(conformed) if kind is None else Kind(kind)
        assert kind is not None  # conform() found it
        return await self.coordinator.submit_many(ArrowRecords(kind, conformed))

    async def flush(self) -> None:
        """Wait until everything accepted so far has been written (or dead-lettered)."""
        await self.coordinator.flush()

    def unavailable(self) -> str | None:
        """Why writes are refused right now (``None``: they are taken): not running, the
        circuit breaker open (the database is failing), or, when ingest acknowledges queued
        records, a dead-letter file that cannot be written (a failure would lose them)."""
        if self._unreached is not None and not self._started:
            return f"the database has not answered since the start ({self._unreached})"
        if self.coordinator.state is not CoordinatorState.RUNNING:
            return f"the write coordinator is {self.coordinator.state}"
        if self.coordinator.breaker.state is BreakerState.OPEN:
            return "the database is failing (circuit breaker open)"
        if self.settings.ack == "queued" and self.dead_letters.last_error is not None:
            return "the dead-letter file cannot be written"
        return None

    @property
    def level(self) -> BackpressureLevel:
        return self.coordinator.stats().level

    def latest_feedback(self) -> FeedbackEvent | None:
        return self.bus.latest(self.settings.coordinator_id)

    # -- reads --------------------------------------------------------------------------

    def _known_at(self, as_known_at: datetime | None) -> datetime | None:
        return check_known_at(as_known_at, self.settings.history_retention_days)

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
        """Bars of ``symbol`` in [start, end); ``as_known_at``: as the store knew them at
        that time (history), else as they are now."""
        return await self.backend.query_bars(
            symbol, timeframe, start, end, source=source, limit=limit,
            as_known_at=self._known_at(as_known_at),
        )  # fmt: skip

    async def latest_bars(self, timeframe: str, symbols: Sequence[str] | None = None) -> list[Bar]:
        return await self.backend.latest_bars(timeframe, symbols)

    async def query_trades(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Trade]:
        return await self.backend.query_trades(
            symbol, start, end, limit=limit, as_known_at=self._known_at(as_known_at)
        )

    async def query_quotes(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Quote]:
        return await self.backend.query_quotes(
            symbol, start, end, limit=limit, as_known_at=self._known_at(as_known_at)
        )

    async def query_table(
        self,
        kind: Kind | str,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        timeframe: str | None = None,
        source: str | None = None,
        limit: int = 1_000_000,
        as_known_at: datetime | None = None,
    ) -> pa.Table:
        """Bars (``timeframe`` required), trades or quotes of ``symbol`` in [start, end) as
        an Arrow table with the ``columnar`` schema of ``kind``, in the order of the
        model queries, built from the database's rows column by column; ``as_known_at``:
        as the store knew them at that time."""
        kind = Kind(kind)
        if kind is Kind.BARS and timeframe is None:
            msg = "a query of bars needs a timeframe"
            raise ValueError(msg)
        if kind is Kind.SIGNALS:
            msg = "signals are not queried by range"
            raise ValueError(msg)
        query = getattr(self.backend, "query_table", None)
        if query is None:
            msg = f"the {self.backend.name} backend has no columnar queries"
            raise TypeError(msg)
        table: pa.Table = await query(
            kind, symbol, clamp_utc(start), clamp_utc(end),
            timeframe=timeframe, source=source, limit=limit,
            as_known_at=self._known_at(as_known_at),
        )  # fmt: skip
        return table

    async def revisions(
        self,
        kind: Kind | str,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        timeframe: str | None = None,
        source: str | None = None,
        limit: int = 100_000,
    ) -> pa.Table:
        """Which records of ``kind`` in [start, end) were revised, when and why: every
        version kept (the current one and those it replaced, within the history kept),
        with ``as_of``, ``revision``, ``reason``, ``ingested_at`` (when the store learned
        it) and ``superseded_at`` (when a newer one replaced it; null: current)."""
        kind = Kind(kind)
        table: pa.Table = await self.backend.revisions(
            kind, symbol, clamp_utc(start), clamp_utc(end),
            timeframe=timeframe, source=source, limit=limit,
        )  # fmt: skip
        return table

    async def purge_history(self) -> int:
        """Delete the versions replaced longer ago than ``history_retention_days``."""
        kept = timedelta(days=self.settings.history_retention_days)
        deleted = await self.backend.purge_history(datetime.now(UTC) - kept)
        if deleted:
            logger.info("history purged", versions=deleted, retention_days=kept.days)
        return deleted

    async def _purge(self) -> None:
        """Purge history now and every ``_PURGE_EVERY`` seconds (errors are logged)."""
        while self._started:
            try:
                await self.purge_history()
            except BackendError as exc:
                logger.warning("history purge failed", error=str(exc))
            await asyncio.sleep(_PURGE_EVERY)

    async def query_frame(self, kind: Kind | str, symbol: str, start: datetime, end: datetime,
                          **options: Any) -> Any:  # fmt: skip
        """``query_table`` as a pandas DataFrame (needs pandas: ``pip install pandas``)."""
        try:
            import pandas  # noqa: F401, PLC0415
        except ImportError:
            msg = "query_frame needs pandas: pip install pandas"
            raise ImportError(msg) from None
        table = await self.query_table(kind, symbol, start, end, **options)
        return table.to_pandas()

    async def freshness(self) -> list[Freshness]:
        return await self.backend.freshness()

    # -- schema -------------------------------------------------------------------------

    async def migrate(self) -> str:
        from market_data_store.migrate import upgrade  # noqa: PLC0415

        revision = await upgrade(self.url)
        if self._started:
            await self._configure_timescale()
        return revision

    async def schema_version(self) -> dict[str, str | None]:
        from market_data_store.migrate import current_revision, head_revision  # noqa: PLC0415

        return {"current": await current_revision(self.url), "head": head_revision()}

    # -- health -------------------------------------------------------------------------

    async def health(self) -> HealthStatus:
        """Readiness from cached component checks: it never waits for the database while
        the store runs (a background task checks it every ``settings.health_interval``
        seconds; a check still waiting past its timeout reads unhealthy)."""
        components = [
            await self._database_now(),
            *self.coordinator.health(),
            self._dead_letter_health(),
            self._feedback_health(),
        ]
        return HealthStatus.from_components(SERVICE, components, version=_version())

    async def _database_now(self) -> HealthComponent:
        if self._unreached is not None and not self._started:  # connecting
            return self._database_unanswered(f"connecting: {self._unreached}")
        if self._database is None or self._watcher is None:  # not running: check now
            return await self._database_health()
        if self._watcher.done():
            return self._database_unanswered("the health check stopped")
        since = self._checking_since
        if since is not None and (age := time.monotonic() - since) > _PING_TIMEOUT + 1.0:
            # the check's own timeout did not end it: the database holds it
            return self._database_unanswered(f"no answer for {age:.1f}s")
        # Else the last answer is the news, however old: a check comes every interval, and
        # the time it is late by is time the process did not run (a busy machine's
        # stall), not the database's
        return self._database

    def _database_unanswered(self, error: str) -> HealthComponent:
        return HealthComponent(
            name="database",
            state=HealthState.UNHEALTHY,
            details={"backend": self.backend.name, "error": error},
        )

    async def _watch(self) -> None:
        """Check the database and the dead-letter file every ``health_interval`` seconds;
        a check that succeeds while the circuit breaker is open half-opens it, so writes
        resume as soon as the database answers again."""
        while self._started:
            await asyncio.sleep(self.settings.health_interval)
            self._checking_since = time.monotonic()
            try:
                component = await self._database_health()
            finally:
                self._checking_since = None
            self._database = component
            if component.state is HealthState.HEALTHY:
                self.coordinator.breaker.probe_succeeded()
            await self.dead_letters.check()

    async def _database_health(self) -> HealthComponent:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(_PING_TIMEOUT):
                await self.backend.ping()
        except (BackendError, TimeoutError, OSError) as exc:
            return HealthComponent(
                name="database",
                state=HealthState.UNHEALTHY,
                details={"backend": self.backend.name, "error": type(exc).__name__},
            )
        return HealthComponent(
            name="database",
            state=HealthState.HEALTHY,
            details={
                "backend": self.backend.name,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                **self._timescale_details(),
            },
        )

    def _timescale_details(self) -> dict[str, str]:
        if self.timescale is None:
            return {}
        if self.timescale.error is not None:
            return {"timescaledb": f"{self.timescale.version} (setup failed)"}
        return {"timescaledb": self.timescale.version or "absent"}

    def _dead_letter_health(self) -> HealthComponent:
        problem = self.dead_letters.last_error
        return HealthComponent(
            name="dead_letters",
            state=HealthState.HEALTHY if problem is None else HealthState.UNHEALTHY,
            details={"path": str(self.dead_letters.path), "error": problem},
        )

    def _feedback_health(self) -> HealthComponent:
        if self._redis is not None:
            component: HealthComponent = self._redis.health()
            return component
        return HealthComponent(
            name="feedback_transport", state=HealthState.HEALTHY, required=False,
            details={"transport": "memory"},
        )  # fmt: skip


def _version() -> str:
    from market_data_store import __version__  # noqa: PLC0415 - avoid an import cycle

    return __version__

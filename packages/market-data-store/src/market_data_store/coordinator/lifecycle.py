"""``WriteCoordinator``: builds its collaborators (one job each, see the package docstring),
starts and stops the workers, their supervisor and the feedback heartbeat, and answers for
them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from market_data_core import (
    BackpressureLevel,
    FeedbackPublisher,
    HealthComponent,
    InMemoryFeedbackBus,
)
from market_data_store._feedback import FeedbackEmitter
from market_data_store._queue import Signal, WriteQueue
from market_data_store.backends.base import Record
from market_data_store.chunks import ArrowChunk, Batch, ModelChunk
from market_data_store.coordinator.admission import Admission
from market_data_store.coordinator.dead_letters import Settlement
from market_data_store.coordinator.drain import Drain
from market_data_store.coordinator.health import queue_health, snapshot, workers_health
from market_data_store.coordinator.held import InFlight
from market_data_store.coordinator.isolation import Isolation
from market_data_store.coordinator.outage import OutageHold
from market_data_store.coordinator.restarts import Restarts
from market_data_store.coordinator.settings import (
    CoordinatorState,
    OnOutage,
    Overflow,
    Writer,
    check_on_outage,
    check_settings,
)
from market_data_store.coordinator.stats import CoordinatorStats, Counters
from market_data_store.coordinator.workers import WorkerPool, cancel
from market_data_store.dlq import DeadLetterStore
from market_data_store.exceptions import CoordinatorStoppedError
from market_data_store.receipts import Ledger, WriteReceipt
from market_data_store.retry import CircuitBreaker, RetryPolicy
from market_data_store.watermarks import Watermarks

__all__ = ["WriteCoordinator"]


class WriteCoordinator:
    """Bounded, backpressured, supervised writes to ``writer``; see the package docstring.

    Use ``async with WriteCoordinator(...) as coordinator:`` or ``start()`` / ``stop()``.
    ``publisher`` defaults to a new ``InMemoryFeedbackBus`` (``coordinator.publisher``).
    ``now`` gives event timestamps (UTC). Arguments that cannot work raise
    ``StoreConfigurationError`` naming the argument.
    """

    def __init__(
        self,
        writer: Writer,
        *,
        coordinator_id: str,
        capacity: int = 10_000,
        workers: int = 2,
        batch_size: int = 1000,
        flush_interval: float = 0.25,
        watermarks: Watermarks | None = None,
        overflow: Overflow = "block",
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        dead_letters: DeadLetterStore | None = None,
        publisher: FeedbackPublisher | None = None,
        heartbeat_interval: float = 5.0,
        publish_timeout: float = 2.0,
        now: Callable[[], datetime] | None = None,
        on_outage: OnOutage = "hold",
    ) -> None:
        check_settings(
            capacity=capacity,
            workers=workers,
            batch_size=batch_size,
            flush_interval=flush_interval,
            overflow=overflow,
            heartbeat_interval=heartbeat_interval,
            publish_timeout=publish_timeout,
        )
        check_on_outage(on_outage)
        self.on_outage: OnOutage = on_outage
        self.coordinator_id = coordinator_id
        self.capacity = capacity
        self.overflow: Overflow = overflow
        self.publisher: FeedbackPublisher = publisher or InMemoryFeedbackBus()
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.dead_letters = dead_letters
        self._heartbeat_interval = heartbeat_interval
        self._state = CoordinatorState.CREATED
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None
        self._queue = WriteQueue(capacity)
        self._emitter = FeedbackEmitter(
            coordinator_id=coordinator_id,
            capacity=capacity,
            watermarks=watermarks or Watermarks(),
            publisher=self.publisher,
            now=now or _utcnow,
            publish_timeout=publish_timeout,
        )
        self._counters = counters = Counters()
        ledger = Ledger()
        progress = Signal()
        self._flight = flight = InFlight()
        settlement = Settlement(
            counters=counters, ledger=ledger, progress=progress, dead_letters=dead_letters
        )
        self._admission = Admission(
            coordinator_id=coordinator_id,
            capacity=capacity,
            overflow=overflow,
            state=lambda: self._state,
            queue=self._queue,
            emitter=self._emitter,
            counters=counters,
            ledger=ledger,
            flight=flight,
            progress=progress,
            settlement=settlement,
        )
        self._pool = WorkerPool(
            name=self._name,
            count=workers,
            batch_size=batch_size,
            flush_interval=flush_interval,
            queue=self._queue,
            emitter=self._emitter,
            flight=flight,
            counters=counters,
            settlement=settlement,
            outage=OutageHold(
                writer,
                retry=self.retry,
                breaker=self.breaker,
                counters=counters,
                holding=self._holds_through_outage,
            ),
            isolation=Isolation(ledger=ledger, breaker=self.breaker, settlement=settlement),
            restarts=Restarts(
                name=self._name, flight=flight, settlement=settlement, counters=counters
            ),
        )
        self._drain = Drain(
            name=self._name,
            batch_size=batch_size,
            pool=self._pool,
            queue=self._queue,
            flight=flight,
            settlement=settlement,
        )

    @property
    def state(self) -> CoordinatorState:
        return self._state

    @property
    def level(self) -> BackpressureLevel:
        """The backpressure level last published (``hard`` while stopping)."""
        return self._emitter.level

    @property
    def _name(self) -> str:
        return f"write-coordinator:{self.coordinator_id}"

    def _holds_through_outage(self) -> bool:
        """An outage is waited out with the batch held: ``on_outage="hold"`` while running."""
        return self.on_outage == "hold" and self._state is CoordinatorState.RUNNING

    async def submit(self, record: Record) -> WriteReceipt:
        """Queue one record (see ``submit_many``)."""
        return await self._admission.submit(record)

    async def submit_many(
        self, records: Iterable[Record] | ArrowChunk | ModelChunk | Batch
    ) -> WriteReceipt:
        """Queue a batch under the overflow strategy; see "Overflow" in the package docstring.
        The receipt tells, once its records are settled, what became of each of them.
        An ``ArrowChunk`` (``ArrowRecords``: see ``Store.submit_arrow``) stays columnar until
        the backend writes it.

        Raises ``CoordinatorStoppedError`` when not running and ``QueueFullError`` under
        ``overflow="error"`` when the batch does not fit (nothing of it accepted)."""
        return await self._admission.submit_many(records)

    async def flush(self) -> None:
        """Wait until every record accepted before this call is written, dead-lettered,
        dropped or failed; workers stop waiting for fuller batches meanwhile. It waits as long
        as that takes (an open circuit breaker holds it): bound it with ``asyncio.timeout``
        when needed."""
        await self._admission.flush()

    def hurried(self) -> contextlib.AbstractContextManager[None]:
        """While inside: workers write what is queued at once, without lingering for a
        fuller batch (someone waits for records to be durable; lingering would only add
        ``flush_interval`` to their wait, since the database is idle meanwhile)."""
        return self._admission.hurried()

    def stats(self) -> CoordinatorStats:
        """A snapshot of the counters and the queue."""
        return snapshot(
            self._counters,
            queue_size=len(self._queue),
            in_flight=self._flight.size,
            capacity=self.capacity,
            level=self.level,
            publish_errors=self._emitter.publish_errors,
            state=self._state,
        )

    def health(self) -> list[HealthComponent]:
        """``write_queue``, ``workers`` and ``circuit_breaker``.

        write_queue: unhealthy unless running, degraded at ``hard`` backpressure.
        workers: healthy when all are alive, degraded while one is being restarted,
        unhealthy when none is (or not running)."""
        return [
            queue_health(
                self._counters,
                state=self._state,
                level=self.level,
                queue_size=len(self._queue),
                capacity=self.capacity,
            ),
            workers_health(
                self._counters,
                state=self._state,
                alive=self._pool.alive,
                expected=self._pool.count,
            ),
            self.breaker.health(),
        ]

    async def start(self) -> None:
        """Start the workers, their supervisor and the heartbeat; publish the first event.

        A no-op when running; a stopped coordinator can be started again (its counters and
        ``seq`` carry on)."""
        if self._state is CoordinatorState.RUNNING:
            return
        if self._state is CoordinatorState.STOPPING:
            msg = f"write coordinator {self.coordinator_id} is stopping; start it after stop()"
            raise CoordinatorStoppedError(msg)
        self._queue.open()
        self._stopped = asyncio.Event()
        self._state = CoordinatorState.RUNNING
        self._emitter.started(len(self._queue))
        self._pool.start()
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._emitter.run_heartbeat(self._heartbeat_interval, self._queue.__len__),
            name=f"{self._name}:heartbeat",
        )

    async def stop(self, *, drain: bool = True, drain_timeout: float | None = None) -> None:
        """Stop accepting records and stop the workers; see "Stopping" in the package
        docstring. A drain that takes longer than ``drain_timeout`` seconds continues as
        ``drain=False``. Returns once every accepted record is accounted for. Idempotent;
        a concurrent call waits for the first one."""
        if self._state is CoordinatorState.STOPPING and self._stopped is not None:
            await self._stopped.wait()
            return
        if self._state is not CoordinatorState.RUNNING:
            return
        self._state = CoordinatorState.STOPPING
        self._queue.close()
        self._emitter.stopping(len(self._queue))
        try:
            if not (drain and await self._drain.drained(drain_timeout)):
                await self._drain.abort()
        finally:
            await cancel(self._pool.supervisor)
            await cancel(self._heartbeat)
            await self._emitter.flush()
            self._state = CoordinatorState.STOPPED
            if self._stopped is not None:
                self._stopped.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop(drain=True)

    def __repr__(self) -> str:
        return (
            f"WriteCoordinator(id={self.coordinator_id!r}, state={self._state.value!r}, "
            f"queue={len(self._queue)}/{self.capacity}, level={self.level.value!r})"
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)

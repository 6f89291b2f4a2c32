"""The write coordinator: a bounded queue in front of a backend, with backpressure feedback.

Producers ``submit`` records; ``workers`` tasks take batches of up to ``batch_size``
records (or whatever arrived within ``flush_interval``) and hand them to ``writer.write``.

Accounting. Every accepted record ends in exactly one counter, so at any time::

    accepted == written + dead_lettered + dropped + failed + queue_size + in_flight

- ``written``: records of batches the writer returned from (the ``WriteResult`` counts rows;
  duplicates inside a batch count once there, every record counts here).
- ``dead_lettered``: records of batches kept in the dead-letter store.
- ``dropped``: evicted by ``overflow="drop_oldest"``, or still queued at
  ``stop(drain=False)`` when there is no dead-letter store. Logged and counted.
- ``failed``: records of batches that failed for good when there is no dead-letter store
  (or the dead-letter store itself failed). Logged and counted.

Overflow, when a batch does not fit in the free space:

- ``block`` (default): wait for space; a batch larger than the free space is queued in
  parts as space frees, in order. If the coordinator stops meanwhile the call raises
  ``CoordinatorStoppedError`` and the parts already queued stay accepted.
- ``drop_oldest``: queue the batch, evicting the oldest queued records (counted in
  ``dropped``); of a batch larger than the capacity only its newest records are kept.
- ``error``: raise ``QueueFullError`` and accept *nothing* of the call (all-or-nothing).

Failures. ``TransientBackendError`` is retried under the ``RetryPolicy``. When the
attempts run out, ``on_outage`` decides: ``hold`` (the default) keeps the batch in its
worker and tries it again whenever the breaker admits a batch, for as long as the
coordinator runs (an outage of the database delays writes but sends nothing to the
dead-letter store; once stopping, the batch is dead-lettered after its attempts so that a
stop ends); ``dead_letter`` sends it to the dead-letter store at once. Any other
``BackendError`` (``PermanentBackendError``: retrying cannot help) goes to the dead-letter
store at once, else counts as ``failed``. Each batch that is not written counts once as a
failure for the ``CircuitBreaker`` (a held batch once per round of attempts). While the
breaker is open, workers wait and take nothing: the queue fills and backpressure goes
``hard`` instead of data being thrown away; half-open, one trial batch goes through.

Isolation. A batch mixes the records of several callers. When the database refuses a
batch for good (``PermanentBackendError``), nothing of it was stored (a batch is one
transaction) and the batch is split in two, where one caller's records begin if possible
(the callers' records part first), else in the middle, and each half is written on its own,
recursively, until each failing part stands alone: every good record is written. Splits
inside one caller's records stop after ``_SPLITS_PER_BATCH`` (a caller that sends thousands
of bad records cannot make the database refuse them one by one); a part that fails then is
refused whole. The verdict on the parts that failed waits until the batch is done:

- when any part of the batch was written, or the database named the value it refused
  (``InvalidValueError``: SQLSTATE class 21, 22 or 23), the failures are the records' fault:
  each record of a failed part is refused, dead-lettered (else failed) with the database's
  reason, and named by its own call's ``WriteReceipt`` (what ``submit_many`` returns). A
  refusal is not a failure of the database: it never counts for the circuit breaker.
- when nothing of the batch could be written and the error was not about a value (a missing
  table, a permission), the failure is systemic: it counts once for the circuit breaker and
  the batch is dead-lettered (else failed) as before isolation.

So a caller's bad records cost that caller only: the other callers of its batch are written,
and the breaker stays closed.

Crashes. Any other exception out of a worker (a bug in the writer or here) crashes it; a
supervisor counts it in ``worker_restarts`` and restarts the worker with a short backoff.
The restarted worker first retries the batch its predecessor held; if that batch crashes a
worker twice it goes to the dead-letter store (else ``failed``), so a poison batch cannot
crash workers forever.

Stopping. ``stop(drain=True)`` refuses new records, stops lingering and returns once
everything accepted was written or dead-lettered. ``stop(drain=False)``, or a drain that
exceeds ``timeout``, cancels the workers and puts what is queued or in flight in the
dead-letter store (else counts it as ``dropped``). A write cancelled that way may have
committed; the store's writes are idempotent upserts, so replaying it is harmless.

Feedback: see ``market_data_store._feedback``; each watermark crossing publishes a
``FeedbackEvent`` (``seq`` + 1) and a heartbeat republishes the latest one every
``heartbeat_interval`` seconds. Publishing never blocks or breaks a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Literal, Protocol, Self, get_args

from market_data_core import (
    BackpressureLevel,
    FeedbackPublisher,
    HealthComponent,
    HealthState,
    InMemoryFeedbackBus,
)
from market_data_store._feedback import FeedbackEmitter
from market_data_store._queue import Batch, Signal, WriteQueue
from market_data_store.backends.base import Record, WriteResult
from market_data_store.columnar import ArrowRecords
from market_data_store.dlq import DeadLetterStore
from market_data_store.exceptions import (
    BackendError,
    CoordinatorStoppedError,
    InvalidValueError,
    PermanentBackendError,
    QueueFullError,
    StoreConfigurationError,
    TransientBackendError,
)
from market_data_store.receipts import Ledger, Outcome, WriteReceipt
from market_data_store.retry import BreakerState, CircuitBreaker, RetryPolicy
from market_data_store.watermarks import Watermarks

__all__ = [
    "CoordinatorState",
    "CoordinatorStats",
    "OnOutage",
    "Overflow",
    "WriteCoordinator",
    "Writer",
]

logger = logging.getLogger(__name__)

Overflow = Literal["block", "drop_oldest", "error"]
OnOutage = Literal["hold", "dead_letter"]

_CRASHES_PER_BATCH = 2
"""A batch that crashed this many workers goes to the dead-letter store."""
_RESTART_BACKOFF = (0.01, 1.0)
"""First and longest delay (seconds) before restarting a worker that keeps crashing."""
_BREAKER_POLL = 0.05
"""How often (seconds, at most) a worker looks at an open circuit breaker."""
_SPLITS_PER_BATCH = 64
"""Splits inside one caller's records (per batch) while isolating refused records."""


class Writer(Protocol):
    """What the coordinator writes to: a ``Backend``, or anything with its ``write``."""

    async def write(self, records: Sequence[Record]) -> WriteResult: ...


class CoordinatorState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class CoordinatorStats:
    """Counters (records unless named otherwise) and the queue's state; see the module
    docstring for what each counter means. ``batches`` counts batches settled (each of
    their records written or given up), ``retries`` write attempts after the first,
    ``worker_restarts`` crashed workers."""

    accepted: int
    written: int
    failed: int
    dead_lettered: int
    dropped: int
    retries: int
    worker_restarts: int
    queue_size: int
    in_flight: int
    capacity: int
    level: BackpressureLevel
    batches: int
    publish_errors: int
    state: CoordinatorState
    outage_rounds: int = 0
    """Rounds of attempts that ran out on transient errors while the batch was held."""
    refused: int = 0
    """Records the database refused as bad data, isolated from their batch (and counted in
    ``dead_lettered`` or ``failed`` too)."""
    isolations: int = 0
    """Splits of a refused batch part (see "Isolation" in the module docstring)."""

    @property
    def unaccounted(self) -> int:
        """Always 0: accepted records not in any counter, queued or in flight."""
        settled = self.written + self.dead_lettered + self.dropped + self.failed
        return self.accepted - settled - self.queue_size - self.in_flight


_Part = tuple[int, Batch]
"""Consecutive records of a batch and the queue position of the first one."""


@dataclass(slots=True)
class _Held:
    """The batch a worker is writing: its parts not yet accounted for, in position order
    (one part, until the database refuses a record of it). It stays held until the last
    part is accounted for."""

    parts: deque[_Part]
    attempts: int = 0
    """Write attempts of the first part."""
    crashes: int = 0
    failed: list[tuple[int, Batch, PermanentBackendError]] = field(default_factory=list)
    """Parts the database refused, standing alone: the verdict waits for the whole batch."""
    wrote: bool = False
    """Some part of the batch was written (so a failed part is its records' fault)."""
    splits: int = 0
    """Splits inside one caller's records so far (see ``_SPLITS_PER_BATCH``)."""

    @property
    def start(self) -> int:
        """The queue position of its first record not yet accounted for (positions count
        accepted records)."""
        first = self.parts[0][0] if self.parts else sys.maxsize
        return min(first, self.failed[0][0]) if self.failed else first

    @property
    def size(self) -> int:
        return sum(len(records) for _, records in self.parts)


class WriteCoordinator:
    """Bounded, backpressured, supervised writes to ``writer``; see the module docstring.

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
        _check_settings(
            capacity=capacity,
            workers=workers,
            batch_size=batch_size,
            flush_interval=flush_interval,
            overflow=overflow,
            heartbeat_interval=heartbeat_interval,
            publish_timeout=publish_timeout,
        )
        if on_outage not in get_args(OnOutage):
            msg = f"on_outage must be one of {', '.join(get_args(OnOutage))}, got {on_outage!r}"
            raise StoreConfigurationError(msg)
        self.on_outage: OnOutage = on_outage
        self.coordinator_id = coordinator_id
        self.capacity = capacity
        self.overflow: Overflow = overflow
        self.publisher: FeedbackPublisher = publisher or InMemoryFeedbackBus()
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.dead_letters = dead_letters
        self._writer = writer
        self._worker_count = workers
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._heartbeat_interval = heartbeat_interval
        self._queue = WriteQueue(capacity)
        self._emitter = FeedbackEmitter(
            coordinator_id=coordinator_id,
            capacity=capacity,
            watermarks=watermarks or Watermarks(),
            publisher=self.publisher,
            now=now or _utcnow,
            publish_timeout=publish_timeout,
        )
        self._state = CoordinatorState.CREATED
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._held: dict[int, _Held] = {}
        self._crash_streak: dict[int, int] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None
        self._salvaging = 0
        self._evicting = False
        self._dequeued = 0
        """Records that left the queue so far: the queue position of its head."""
        self._progress = Signal()
        self._accepted = self._written = self._failed = self._dead_lettered = 0
        self._dropped = self._retries = self._restarts = self._batches = 0
        self._outage_rounds = 0
        self._refused = self._isolations = 0
        self._ledger = Ledger()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def state(self) -> CoordinatorState:
        return self._state

    @property
    def level(self) -> BackpressureLevel:
        """The backpressure level last published (``hard`` while stopping)."""
        return self._emitter.level

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
        for slot in range(self._worker_count):
            self._spawn(slot, delay=0.0)
        loop = asyncio.get_running_loop()
        self._supervisor = loop.create_task(self._supervise(), name=f"{self._name}:supervisor")
        self._heartbeat = loop.create_task(
            self._emitter.run_heartbeat(self._heartbeat_interval, self._queue.__len__),
            name=f"{self._name}:heartbeat",
        )

    async def stop(self, *, drain: bool = True, drain_timeout: float | None = None) -> None:
        """Stop accepting records and stop the workers; see "Stopping" in the module
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
            if not (drain and await self._drained(drain_timeout)):
                await self._abort()
        finally:
            await _cancel(self._supervisor)
            await _cancel(self._heartbeat)
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

    # -- producers -------------------------------------------------------------------------

    async def submit(self, record: Record) -> WriteReceipt:
        """Queue one record (see ``submit_many``)."""
        return await self.submit_many((record,))

    async def submit_many(self, records: Iterable[Record] | ArrowRecords) -> WriteReceipt:
        """Queue a batch under the overflow strategy; see "Overflow" in the module docstring.
        The receipt tells, once its records are settled, what became of each of them.
        An ``ArrowRecords`` table (see ``Store.submit_arrow``) stays columnar until the
        backend writes it.

        Raises ``CoordinatorStoppedError`` when not running and ``QueueFullError`` under
        ``overflow="error"`` when the batch does not fit (nothing of it accepted)."""
        batch: Sequence[Record] = (
            records  # type: ignore[assignment]  # sliced and measured like a sequence
            if isinstance(records, Sequence | ArrowRecords)
            else tuple(records)
        )
        receipt = WriteReceipt(len(batch))
        if not batch:
            return receipt
        self._ensure_running(0, len(batch))
        if self.overflow == "error":
            self._put_or_refuse(batch, receipt)
        elif self.overflow == "drop_oldest":
            self._put_evicting(batch, receipt)
        else:
            await self._put_blocking(batch, receipt)
        return receipt

    async def flush(self) -> None:
        """Wait until every record accepted before this call is written, dead-lettered,
        dropped or failed; workers stop waiting for fuller batches meanwhile. It waits as long
        as that takes (an open circuit breaker holds it): bound it with ``asyncio.timeout``
        when needed."""
        target = self._accepted
        self._queue.hurry()  # no lingering for a fuller batch meanwhile
        try:
            while not self._settled_before(target):
                await self._progress.wait()
        finally:
            self._queue.relax()

    @contextlib.contextmanager
    def hurried(self) -> Iterator[None]:
        """While inside: workers write what is queued at once, without lingering for a
        fuller batch (someone waits for records to be durable; lingering would only add
        ``flush_interval`` to their wait, since the database is idle meanwhile)."""
        self._queue.hurry()
        try:
            yield
        finally:
            self._queue.relax()

    def _settled_before(self, position: int) -> bool:
        if self._dequeued < position or self._salvaging:
            return False
        return all(held.start >= position for held in self._held.values())

    def _put_or_refuse(self, batch: Sequence[Record], receipt: WriteReceipt) -> None:
        if len(batch) > self._queue.free:
            msg = (
                f"write queue of {self.coordinator_id} is full: {len(batch)} records do not "
                f"fit in {self._queue.free} free of {self.capacity}; none were accepted"
            )
            raise QueueFullError(msg)
        self._accept(batch, receipt, 0)

    def _put_evicting(self, batch: Sequence[Record], receipt: WriteReceipt) -> None:
        evicted = self._queue.put_evicting(batch)
        self._ledger.add(self._accepted, len(batch), receipt, 0)
        self._accepted += len(batch)
        if evicted:
            self._settle(self._dequeued, evicted, Outcome.DROPPED)
            self._dequeued += evicted
        if evicted and not self._evicting:
            logger.warning(
                "write queue of %s is full: dropping the oldest records (see stats().dropped)",
                self.coordinator_id,
            )
        self._evicting = evicted > 0
        self._emitter.observe(len(self._queue))

    async def _put_blocking(self, batch: Sequence[Record], receipt: WriteReceipt) -> None:
        done = 0
        try:
            while done < len(batch):
                self._ensure_running(done, len(batch))
                room = self._queue.free
                if room == 0:
                    await self._queue.wait_for_space()
                    continue
                part = batch[done : done + room]
                self._accept(part, receipt, done)
                done += len(part)
        except BaseException:
            receipt.shrink(done)  # the parts queued stay accepted; the call raises
            raise

    def _accept(self, records: Sequence[Record], receipt: WriteReceipt, offset: int) -> None:
        self._queue.put(records)
        self._ledger.add(self._accepted, len(records), receipt, offset)
        self._accepted += len(records)
        self._emitter.observe(len(self._queue))

    def _ensure_running(self, done: int, total: int) -> None:
        if self._state is CoordinatorState.RUNNING:
            return
        accepted = f"; {done} of {total} records were accepted before" if done else ""
        msg = (
            f"write coordinator {self.coordinator_id} is {self._state}, "
            f"not accepting writes{accepted}"
        )
        raise CoordinatorStoppedError(msg)

    # -- workers ---------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return f"write-coordinator:{self.coordinator_id}"

    def _spawn(self, slot: int, *, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(
            self._work(slot, delay), name=f"{self._name}:worker-{slot}"
        )
        self._workers[slot] = task

    async def _work(self, slot: int, delay: float) -> None:
        """Write batches until the queue is closed and empty. Resumes the batch a crashed
        predecessor held, if any."""
        if delay:
            await asyncio.sleep(delay)
        held = self._held.get(slot)
        if held is not None:
            await self._process(slot, held)
        while True:
            await self._breaker_not_open()
            records = await self._queue.take(self._batch_size, self._flush_interval)
            if not records:
                return
            held = self._held[slot] = _Held(deque([(self._dequeued, records)]))
            self._dequeued += len(records)
            self._emitter.observe(len(self._queue))
            await self._process(slot, held)

    async def _process(self, slot: int, held: _Held) -> None:
        """Write a held batch part by part (or crash, keeping what is left held). A part the
        database refuses for good is split until the failing parts stand alone, then judged;
        see "Isolation" in the module docstring."""
        while held.parts:
            start, records = held.parts[0]
            error = await self._write_part(held, records)
            if error is None:
                held.parts.popleft()
                held.wrote = True
                self._settle(start, len(records), Outcome.WRITTEN)
            elif isinstance(error, PermanentBackendError):
                held.parts.popleft()
                held.attempts = 0
                halves = self._split(held, start, records)
                if halves:
                    held.parts.extendleft(reversed(halves))
                    self._isolations += 1
                else:
                    held.failed.append((start, records, error))
            else:
                await self._give_up(held, _describe(error))
        await self._judge(held)
        del self._held[slot]
        self._batches += 1  # settled: every record of it written, refused or given up
        self._crash_streak[slot] = 0

    def _split(self, held: _Held, start: int, records: Batch) -> list[_Part]:
        """The two halves of a part the database refused, or none when it stands alone: one
        record, or one caller's records once ``_SPLITS_PER_BATCH`` splits inside callers
        were spent."""
        if len(records) < 2:
            return []
        inside = self._ledger.boundaries(start, start + len(records))
        if not inside:
            if held.splits >= _SPLITS_PER_BATCH:
                return []
            held.splits += 1
        return self._halves(start, records, inside)

    async def _judge(self, held: _Held) -> None:
        """Settle the parts the database refused: the records' fault when any part of the
        batch was written or the database named a value, else a systemic failure (one for
        the breaker, dead-lettered as a batch)."""
        failed, held.failed = held.failed, []
        systemic = not held.wrote and not all(_about_values(error) for *_, error in failed)
        if systemic:
            self.breaker.record_failure()
        elif failed:
            self.breaker.record_success()  # the database answered and judged values
        if systemic:
            failed = _merged(failed)
        for start, records, error in failed:
            held.parts.appendleft((start, records))
            blamed = not systemic or _about_values(error)
            await self._give_up(held, _describe(error), _reason(error) if blamed else None)

    async def _write_part(self, held: _Held, records: Batch) -> BackendError | None:
        """Write the first part of ``held`` with retries: ``None`` once written, else the
        error that settles it. Under ``on_outage="hold"`` an outage is waited out."""
        while True:
            trial = await self._admit()
            try:
                await self.retry.call(
                    lambda: self._attempt(held, records),
                    on_retry=lambda attempt, error, delay: self._count_retry(held, error, delay),
                )
            except asyncio.CancelledError:
                if trial:
                    self.breaker.release()
                raise
            except TransientBackendError as exc:
                self.breaker.record_failure()
                if self._holds_through_outage():
                    self._held_over(held, exc)
                    continue
                return exc
            except PermanentBackendError as exc:
                if trial:
                    self.breaker.release()  # judged with the whole batch (see _judge)
                return exc
            except BackendError as exc:
                self.breaker.record_failure()
                return exc
            except Exception:
                self.breaker.record_failure()
                raise
            self.breaker.record_success()
            return None

    def _halves(self, start: int, records: Batch, inside: list[int]) -> list[_Part]:
        """Two parts of a refused part: split where one caller's records begin, the one
        nearest the middle (the callers' records stay apart), else in the middle."""
        middle = start + len(records) // 2
        cut = min(inside, key=lambda boundary: abs(boundary - middle)) if inside else middle
        return [(start, records[: cut - start]), (cut, records[cut - start :])]

    async def _attempt(self, held: _Held, records: Batch) -> WriteResult:
        held.attempts += 1
        return await self._writer.write(records)

    def _holds_through_outage(self) -> bool:
        return self.on_outage == "hold" and self._state is CoordinatorState.RUNNING

    def _held_over(self, held: _Held, error: TransientBackendError) -> None:
        """A round of attempts ran out during an outage: keep the batch for the next one."""
        self._outage_rounds += 1
        logger.warning(
            "a batch of %d records is still not written after %d attempts (%s); holding it"
            " until the database answers",
            held.size,
            held.attempts,
            error,
        )

    def _count_retry(self, held: _Held, error: TransientBackendError, delay: float) -> None:
        self._retries += 1
        logger.info(
            "write attempt %d of a batch of %d records failed (%s); retrying in %.3fs",
            held.attempts,
            held.size,
            error,
            delay,
        )

    async def _admit(self) -> bool:
        """Wait until the breaker admits a batch; True when it is the half-open trial."""
        while True:
            state = self.breaker.state
            if self.breaker.try_acquire():
                return state is BreakerState.HALF_OPEN
            await asyncio.sleep(self._breaker_wait())

    async def _breaker_not_open(self) -> None:
        # Polling: the breaker half-opens by its own clock (injectable), not by an event.
        while self.breaker.state is BreakerState.OPEN:  # noqa: ASYNC110
            await asyncio.sleep(self._breaker_wait())

    def _breaker_wait(self) -> float:
        return min(max(self.breaker.retry_after(), 0.001), _BREAKER_POLL)

    async def _give_up(self, held: _Held, error: str, refusal: str | None = None) -> None:
        """The first part of ``held`` failed for good: dead-letter it (else count it as
        failed). With a ``refusal`` its records were refused by the database: each is a
        refusal of its call too.

        Cancelling the worker meanwhile does not interrupt the put: the part is settled
        first, then the cancellation goes on (else it would be dead-lettered twice)."""
        start, records = held.parts[0]
        put = asyncio.ensure_future(self._dead_letter(records, error, held.attempts))
        try:
            await asyncio.shield(put)
        finally:
            if not put.done():
                await asyncio.wait((put,))
            held.parts.popleft()
            outcome = Outcome.DEAD_LETTERED if put.result() else Outcome.FAILED
            if outcome is Outcome.FAILED:
                logger.error(
                    "%d records failed after %d attempts and could not be dead-lettered: %s",
                    len(records),
                    held.attempts,
                    error,
                )
            held.attempts = 0
            if refusal is None:
                self._settle(start, len(records), outcome)
            else:
                for position in range(start, start + len(records)):
                    self._refuse(position, refusal, outcome)

    def _refuse(self, position: int, reason: str, outcome: Outcome) -> None:
        self._refused += 1
        self._count(outcome, 1)
        self._ledger.refuse(position, reason, outcome)
        self._progress.notify()

    def _settle(self, start: int, count: int, outcome: Outcome) -> None:
        """Positions ``[start, start + count)`` are settled: count them, tell their callers."""
        self._count(outcome, count)
        self._ledger.settle(start, count, outcome)
        self._progress.notify()

    def _count(self, outcome: Outcome, count: int) -> None:
        if outcome is Outcome.WRITTEN:
            self._written += count
        elif outcome is Outcome.DEAD_LETTERED:
            self._dead_lettered += count
        elif outcome is Outcome.FAILED:
            self._failed += count
        else:
            self._dropped += count

    async def _dead_letter(self, records: Sequence[Record], error: str, attempts: int) -> bool:
        """Put a batch in the dead-letter store; False when there is none or it failed."""
        if self.dead_letters is None:
            return False
        try:
            await self.dead_letters.put(records, error=error, attempts=attempts)
        except Exception:
            logger.exception("the dead-letter store failed to keep %d records", len(records))
            return False
        return True

    # -- supervision -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Restart crashed workers until every worker has ended normally."""
        while self._workers:
            await asyncio.wait(tuple(self._workers.values()), return_when=asyncio.FIRST_COMPLETED)
            for slot, task in tuple(self._workers.items()):
                if not task.done():
                    continue
                del self._workers[slot]
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    await self._recover(slot, error)

    async def _recover(self, slot: int, error: BaseException) -> None:
        """Count the crash, settle or keep the batch it held, restart the worker."""
        self._restarts += 1
        streak = self._crash_streak[slot] = self._crash_streak.get(slot, 0) + 1
        logger.error("worker %d of %s crashed; restarting it", slot, self._name, exc_info=error)
        held = self._held.get(slot)
        if held is not None:
            held.crashes += 1
            if held.crashes >= _CRASHES_PER_BATCH:
                while held.parts:
                    await self._give_up(held, f"worker crashed: {_describe(error)}")
                del self._held[slot]
        first, longest = _RESTART_BACKOFF
        self._spawn(slot, delay=min(first * 2 ** (streak - 1), longest))

    async def _drained(self, limit: float | None) -> bool:
        """Wait for the workers to finish the queue; False when ``limit`` seconds passed."""
        if self._supervisor is None:
            return True
        supervisor = self._supervisor
        done, _ = await asyncio.wait((supervisor,), timeout=limit)
        if not done:
            logger.warning("%s did not drain within %ss; stopping without", self._name, limit)
            return False
        if not supervisor.cancelled() and supervisor.exception() is not None:
            logger.error("the supervisor of %s failed", self._name, exc_info=supervisor.exception())
            return False
        return True

    async def _abort(self) -> None:
        """Cancel the workers; dead-letter (else drop) what is queued or was in flight."""
        await _cancel(self._supervisor)
        for task in tuple(self._workers.values()):
            await _cancel(task)
        self._workers.clear()
        queued = self._queue.take_all()
        first = self._dequeued
        self._dequeued += len(queued)
        self._salvaging = len(queued)
        for offset in range(0, len(queued), self._batch_size):
            part = queued[offset : offset + self._batch_size]
            await self._salvage(first + offset, part, "coordinator stopped before writing", 0)
        for slot, held in tuple(self._held.items()):
            self._salvaging += held.size
            del self._held[slot]
            for start, records in held.parts:
                error = "coordinator stopped during the write"
                await self._salvage(start, records, error, held.attempts)

    async def _salvage(self, start: int, records: Batch, error: str, attempts: int) -> None:
        stored = await self._dead_letter(records, error, attempts)
        self._salvaging -= len(records)
        if stored:
            outcome = Outcome.DEAD_LETTERED
        elif self.dead_letters is not None:
            outcome = Outcome.FAILED
        else:
            outcome = Outcome.DROPPED
            logger.warning(
                "%s stopped without draining: %d records dropped (no dead-letter store)",
                self._name,
                len(records),
            )
        self._settle(start, len(records), outcome)

    # -- observation -----------------------------------------------------------------------

    def stats(self) -> CoordinatorStats:
        """A snapshot of the counters and the queue."""
        in_flight = sum(held.size for held in self._held.values()) + self._salvaging
        return CoordinatorStats(
            accepted=self._accepted,
            written=self._written,
            failed=self._failed,
            dead_lettered=self._dead_lettered,
            dropped=self._dropped,
            retries=self._retries,
            worker_restarts=self._restarts,
            queue_size=len(self._queue),
            in_flight=in_flight,
            capacity=self.capacity,
            level=self.level,
            batches=self._batches,
            publish_errors=self._emitter.publish_errors,
            state=self._state,
            outage_rounds=self._outage_rounds,
            refused=self._refused,
            isolations=self._isolations,
        )

    def health(self) -> list[HealthComponent]:
        """``write_queue``, ``workers`` and ``circuit_breaker``.

        write_queue: unhealthy unless running, degraded at ``hard`` backpressure.
        workers: healthy when all are alive, degraded while one is being restarted,
        unhealthy when none is (or not running)."""
        return [self._queue_health(), self._workers_health(), self.breaker.health()]

    def _queue_health(self) -> HealthComponent:
        if self._state is not CoordinatorState.RUNNING:
            state = HealthState.UNHEALTHY
        elif self.level is BackpressureLevel.HARD:
            state = HealthState.DEGRADED
        else:
            state = HealthState.HEALTHY
        size = len(self._queue)
        return HealthComponent(
            name="write_queue",
            state=state,
            details={
                "state": self._state.value,
                "level": self.level.value,
                "queue_size": size,
                "capacity": self.capacity,
                "utilization": round(size / self.capacity, 4),
                "dropped": self._dropped,
                "dead_lettered": self._dead_lettered,
                "failed": self._failed,
            },
        )

    def _workers_health(self) -> HealthComponent:
        alive = sum(not task.done() for task in self._workers.values())
        if self._state is not CoordinatorState.RUNNING or alive == 0:
            state = HealthState.UNHEALTHY
        elif alive < self._worker_count:
            state = HealthState.DEGRADED
        else:
            state = HealthState.HEALTHY
        return HealthComponent(
            name="workers",
            state=state,
            details={"alive": alive, "expected": self._worker_count, "restarts": self._restarts},
        )

    def __repr__(self) -> str:
        return (
            f"WriteCoordinator(id={self.coordinator_id!r}, state={self._state.value!r}, "
            f"queue={len(self._queue)}/{self.capacity}, level={self.level.value!r})"
        )


def _check_settings(
    *,
    capacity: int,
    workers: int,
    batch_size: int,
    flush_interval: float,
    overflow: str,
    heartbeat_interval: float,
    publish_timeout: float,
) -> None:
    """Raise ``StoreConfigurationError`` naming the first argument that cannot work."""
    problems = (
        ("capacity", capacity >= 1, f"must be >= 1, got {capacity}"),
        ("workers", workers >= 1, f"must be >= 1, got {workers}"),
        ("batch_size", batch_size >= 1, f"must be >= 1, got {batch_size}"),
        (
            "flush_interval",
            0 <= flush_interval < float("inf"),
            f"must be >= 0 seconds, got {flush_interval}",
        ),
        (
            "overflow",
            overflow in get_args(Overflow),
            f"must be one of {get_args(Overflow)}, got {overflow!r}",
        ),
        (
            "heartbeat_interval",
            0 < heartbeat_interval < float("inf"),
            f"must be > 0 seconds, got {heartbeat_interval}",
        ),
        (
            "publish_timeout",
            0 < publish_timeout < float("inf"),
            f"must be > 0 seconds, got {publish_timeout}",
        ),
    )
    for name, ok, text in problems:
        if not ok:
            msg = f"write coordinator {name} {text}"
            raise StoreConfigurationError(msg)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for it to end; its own outcome (even an error) is consumed."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _merged(
    failed: list[tuple[int, Batch, PermanentBackendError]],
) -> list[tuple[int, Batch, PermanentBackendError]]:
    """Failed parts, the consecutive ones joined again (a systemic failure is dead-lettered
    as the batch it was, with its first error)."""
    merged: list[tuple[int, Batch, PermanentBackendError]] = []
    for start, records, error in failed:
        if merged and merged[-1][0] + len(merged[-1][1]) == start:
            first, joined, reason = merged[-1]
            merged[-1] = (first, Batch((*joined.chunks, *records.chunks)), reason)
        else:
            merged.append((start, records, error))
    return merged


def _about_values(error: PermanentBackendError) -> bool:
    """The database named a value it cannot store: the records' fault wherever they are."""
    return isinstance(error, InvalidValueError)


def _reason(error: PermanentBackendError) -> str:
    """What to tell the caller whose records the database refused."""
    return error.reason if isinstance(error, InvalidValueError) else str(error)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _utcnow() -> datetime:
    return datetime.now(UTC)

"""Admission: producers' records enter the bounded queue under the overflow strategy (see
"Overflow" in the package docstring), each accepted record gets its queue position in the
ledger, and the backpressure level follows the queue's fill."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import structlog

from market_data_store._feedback import FeedbackEmitter
from market_data_store._queue import Signal, WriteQueue
from market_data_store.backends.base import Record
from market_data_store.chunks import ArrowChunk, Batch, ModelChunk
from market_data_store.coordinator.dead_letters import Settlement
from market_data_store.coordinator.held import InFlight
from market_data_store.coordinator.settings import CoordinatorState, Overflow
from market_data_store.coordinator.stats import Counters
from market_data_store.exceptions import CoordinatorStoppedError, QueueFullError
from market_data_store.receipts import Ledger, Outcome, WriteReceipt

__all__ = ["Admission", "as_batch"]

logger = structlog.get_logger(__name__)


def as_batch(records: Iterable[Record] | ArrowChunk | ModelChunk | Batch) -> Batch:
    """A producer's records as the batch of chunks the queue carries: an Arrow chunk stays
    columnar, models become one model chunk of their own."""
    if isinstance(records, Batch):
        return records
    if isinstance(records, ArrowChunk | ModelChunk):
        return Batch([records])
    return Batch([ModelChunk(tuple(records))])


class Admission:
    """``submit``, ``submit_many``, ``flush`` and ``hurried``: records enter ``queue`` (of
    ``capacity``) under ``overflow`` while ``state()`` is running; each accepted record is
    counted in ``counters``, gets its queue position in ``ledger`` and its fill is shown to
    the ``emitter``; evicted records are settled through ``settlement``. ``flight`` and
    ``progress`` tell ``flush`` when what it waits for is settled."""

    def __init__(
        self,
        *,
        coordinator_id: str,
        capacity: int,
        overflow: Overflow,
        state: Callable[[], CoordinatorState],
        queue: WriteQueue,
        emitter: FeedbackEmitter,
        counters: Counters,
        ledger: Ledger,
        flight: InFlight,
        progress: Signal,
        settlement: Settlement,
    ) -> None:
        self._coordinator_id = coordinator_id
        self._capacity = capacity
        self._overflow: Overflow = overflow
        self._state = state
        self._queue = queue
        self._emitter = emitter
        self._counters = counters
        self._ledger = ledger
        self._flight = flight
        self._progress = progress
        self._settlement = settlement
        self._evicting = False

    async def submit(self, record: Record) -> WriteReceipt:
        """Queue one record (see ``submit_many``)."""
        return await self.submit_many((record,))

    async def submit_many(
        self, records: Iterable[Record] | ArrowChunk | ModelChunk | Batch
    ) -> WriteReceipt:
        """``WriteCoordinator.submit_many``: the batch queued under the overflow strategy."""
        batch = as_batch(records)
        receipt = WriteReceipt(len(batch))
        if not batch:
            return receipt
        self._ensure_running(0, len(batch))
        if self._overflow == "error":
            self._put_or_refuse(batch, receipt)
        elif self._overflow == "drop_oldest":
            self._put_evicting(batch, receipt)
        else:
            await self._put_blocking(batch, receipt)
        return receipt

    async def flush(self) -> None:
        """Wait until every record accepted before this call is written, dead-lettered,
        dropped or failed; workers stop waiting for fuller batches meanwhile. It waits as long
        as that takes (an open circuit breaker holds it): bound it with ``asyncio.timeout``
        when needed."""
        target = self._counters.accepted
        self._queue.hurry()  # no lingering for a fuller batch meanwhile
        try:
            while not self._flight.settled_before(target):
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

    def _put_or_refuse(self, batch: Batch, receipt: WriteReceipt) -> None:
        if len(batch) > self._queue.free:
            msg = (
                f"write queue of {self._coordinator_id} is full: {len(batch)} records do not "
                f"fit in {self._queue.free} free of {self._capacity}; none were accepted"
            )
            raise QueueFullError(msg)
        self._accept(batch, receipt, 0)

    def _put_evicting(self, batch: Batch, receipt: WriteReceipt) -> None:
        evicted = self._queue.put_evicting(batch)
        self._ledger.add(self._counters.accepted, len(batch), receipt, 0)
        self._counters.accepted += len(batch)
        if evicted:
            self._settlement.settle(self._flight.take(evicted), evicted, Outcome.DROPPED)
        if evicted and not self._evicting:
            logger.warning(
                "write queue is full: dropping the oldest records (see stats().dropped)",
                coordinator=self._coordinator_id,
            )
        self._evicting = evicted > 0
        self._emitter.observe(len(self._queue))

    async def _put_blocking(self, batch: Batch, receipt: WriteReceipt) -> None:
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

    def _accept(self, records: Batch, receipt: WriteReceipt, offset: int) -> None:
        self._queue.put(records)
        self._ledger.add(self._counters.accepted, len(records), receipt, offset)
        self._counters.accepted += len(records)
        self._emitter.observe(len(self._queue))

    def _ensure_running(self, done: int, total: int) -> None:
        state = self._state()
        if state is CoordinatorState.RUNNING:
            return
        accepted = f"; {done} of {total} records were accepted before" if done else ""
        msg = f"write coordinator {self._coordinator_id} is {state}, not accepting writes{accepted}"
        raise CoordinatorStoppedError(msg)

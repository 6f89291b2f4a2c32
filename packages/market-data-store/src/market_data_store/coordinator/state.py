"""What every part of the write coordinator shares: its arguments, queue, counters, ledger
and tasks, and how a settled record is counted and told to its caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from market_data_core import BackpressureLevel, FeedbackPublisher, InMemoryFeedbackBus
from market_data_store._feedback import FeedbackEmitter
from market_data_store._queue import Signal, WriteQueue
from market_data_store.coordinator.held import Held
from market_data_store.coordinator.settings import (
    CoordinatorState,
    OnOutage,
    Overflow,
    Writer,
    check_on_outage,
    check_settings,
)
from market_data_store.coordinator.stats import Counters
from market_data_store.dlq import DeadLetterStore
from market_data_store.receipts import Ledger, Outcome
from market_data_store.retry import CircuitBreaker, RetryPolicy
from market_data_store.watermarks import Watermarks

__all__ = ["CoordinatorCore", "describe"]


class CoordinatorCore:
    """The coordinator's state, built from its arguments (see ``WriteCoordinator``), and the
    accounting every job of it uses: ``_settle`` and ``_refuse``."""

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
        self._held: dict[int, Held] = {}
        self._crash_streak: dict[int, int] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None
        self._salvaging = 0
        self._evicting = False
        self._dequeued = 0
        """Records that left the queue so far: the queue position of its head."""
        self._progress = Signal()
        self._counters = Counters()
        self._ledger = Ledger()

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

    def _refuse(self, position: int, reason: str, outcome: Outcome) -> None:
        """The record at ``position`` was refused by the database and settled as ``outcome``."""
        self._counters.refused += 1
        self._counters.count(outcome, 1)
        self._ledger.refuse(position, reason, outcome)
        self._progress.notify()

    def _settle(self, start: int, count: int, outcome: Outcome) -> None:
        """Positions ``[start, start + count)`` are settled: count them, tell their callers."""
        self._counters.count(outcome, count)
        self._ledger.settle(start, count, outcome)
        self._progress.notify()


def describe(error: BaseException) -> str:
    """An error as its type and message, for dead letters and logs."""
    return f"{type(error).__name__}: {error}"


def _utcnow() -> datetime:
    return datetime.now(UTC)

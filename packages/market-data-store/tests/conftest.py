"""Fakes and fixtures of the write coordinator's unit tests.

``FakeWriter`` stands in for a backend's ``write`` (the coordinator is unit-tested here;
real databases are exercised by the backend and integration tests). It can be held at a
gate, made slow, fail transiently or permanently, crash, or fail by a rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from market_data_core import FeedbackEvent, Trade
from market_data_core.protocols import TelemetryMessage
from market_data_core.testing import T0, FakeClock, make_bar, make_quote, make_signal, make_trade
from market_data_store.backends.base import Record, WriteResult, split_records
from market_data_store.coordinator import WriteCoordinator
from market_data_store.exceptions import PermanentBackendError, TransientBackendError
from market_data_store.retry import CircuitBreaker, RetryPolicy

Failure = Callable[[Sequence[Record]], BaseException | None]


class WriterCrashError(RuntimeError):
    """What a crashing fake writer raises: not a ``BackendError``, so a bug."""


class FakeWriter:
    """An in-memory ``write``: keeps what it was given, in order, unless told to fail.

    Knobs (checked in this order on each call): ``gate`` (an open/closed event the call
    waits on), ``delay`` seconds, ``crashes`` (raise ``WriterCrashError`` for the next N
    calls), ``permanent`` (always raise ``PermanentBackendError``), ``transient`` (raise
    ``TransientBackendError`` for the next N calls), ``rule`` (a function of the batch
    returning the exception to raise, or None).
    """

    def __init__(self) -> None:
        self.written: list[Record] = []
        self.batches: list[int] = []
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.delay = 0.0
        self.crashes = 0
        self.permanent = False
        self.transient = 0
        self.rule: Failure | None = None

    def hold(self) -> None:
        """Make every write wait until ``release()``."""
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def write(self, records: Sequence[Record]) -> WriteResult:
        self.calls += 1
        await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        error = self._failure(records)
        if error is not None:
            raise error
        self.written.extend(records)
        self.batches.append(len(records))
        split = split_records(records)
        return WriteResult(
            bars=len(split.bars),
            trades=len(split.trades),
            quotes=len(split.quotes),
            signals=len(split.signals),
        )

    def _failure(self, records: Sequence[Record]) -> BaseException | None:
        if self.crashes > 0:
            self.crashes -= 1
            return WriterCrashError("bug in the writer")
        if self.permanent:
            return PermanentBackendError("constraint violated")
        if self.transient > 0:
            self.transient -= 1
            return TransientBackendError("connection reset")
        return self.rule(records) if self.rule is not None else None


class RecordingPublisher:
    """A ``FeedbackPublisher`` that keeps every message; can be made to fail or hang."""

    def __init__(self) -> None:
        self.messages: list[TelemetryMessage] = []
        self.fail = False
        self.hang = False

    async def publish(self, message: TelemetryMessage) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            msg = "transport down"
            raise ConnectionError(msg)
        self.messages.append(message)

    @property
    def events(self) -> list[FeedbackEvent]:
        return [m for m in self.messages if isinstance(m, FeedbackEvent)]


def trades(count: int, *, start: int = 0, symbol: str = "AAPL") -> list[Trade]:
    """``count`` distinct trades (one microsecond apart)."""
    return [
        make_trade(symbol=symbol, ts=T0 + timedelta(microseconds=i), price=100.0 + i)
        for i in range(start, start + count)
    ]


def mixed(count: int) -> list[Record]:
    """Bars, trades, quotes and signals in turn, all distinct."""
    makers: list[Callable[[int], Record]] = [
        lambda i: make_bar(start=T0 + timedelta(minutes=i)),
        lambda i: make_trade(ts=T0 + timedelta(microseconds=i)),
        lambda i: make_quote(ts=T0 + timedelta(microseconds=i)),
        lambda i: make_signal(ts=T0 + timedelta(microseconds=i)),
    ]
    return [makers[i % 4](i) for i in range(count)]


def fast_retry(attempts: int = 3) -> RetryPolicy:
    """A retry policy that does not wait (and records the delays it would have slept)."""

    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    return RetryPolicy(attempts=attempts, base_delay=0.001, max_delay=0.01, sleep=no_sleep)


async def eventually(
    condition: Callable[[], bool], *, within: float = 10.0, what: str = "condition"
) -> None:
    """Wait until ``condition()`` holds, failing the test after ``within`` seconds (a
    generous bound: it only matters when the behaviour is broken)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


async def settle() -> None:
    """Let every ready task run for a while (no timing: just event-loop turns)."""
    for _ in range(50):
        await asyncio.sleep(0)


@pytest.fixture
def fake_writer() -> FakeWriter:
    return FakeWriter()


@pytest.fixture
def recording_publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def kit() -> SimpleNamespace:
    """This module's helpers and fakes, for test modules (which cannot import each other)."""
    return SimpleNamespace(
        trades=trades,
        mixed=mixed,
        fast_retry=fast_retry,
        eventually=eventually,
        settle=settle,
        FakeWriter=FakeWriter,
        FakeClock=FakeClock,
        RecordingPublisher=RecordingPublisher,
        WriterCrashError=WriterCrashError,
    )


CoordinatorFactory = Callable[..., Awaitable[WriteCoordinator]]


@pytest_asyncio.fixture
async def make_coordinator(
    fake_writer: FakeWriter, recording_publisher: RecordingPublisher
) -> AsyncIterator[CoordinatorFactory]:
    """``await make_coordinator(**kwargs)``: a started coordinator over ``fake_writer``
    publishing to ``recording_publisher``, with test-sized defaults (small intervals, a
    retry policy that does not sleep). Stopped without draining at teardown."""
    made: list[WriteCoordinator] = []

    async def make(**kwargs: Any) -> WriteCoordinator:
        kwargs.setdefault("coordinator_id", "store-test")
        kwargs.setdefault("capacity", 100)
        kwargs.setdefault("workers", 2)
        kwargs.setdefault("batch_size", 10)
        kwargs.setdefault("flush_interval", 0.005)
        kwargs.setdefault("retry", fast_retry())
        kwargs.setdefault("breaker", CircuitBreaker(failure_threshold=1000, reset_timeout=0.01))
        kwargs.setdefault("publisher", recording_publisher)
        kwargs.setdefault("heartbeat_interval", 60.0)
        writer = kwargs.pop("writer", fake_writer)
        start = kwargs.pop("start", True)
        coordinator = WriteCoordinator(writer, **kwargs)
        made.append(coordinator)
        if start:
            await coordinator.start()
        return coordinator

    yield make
    fake_writer.release()
    for coordinator in made:
        await coordinator.stop(drain=False)

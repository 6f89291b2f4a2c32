"""The workers: each takes a batch from the queue, writes it part by part (isolating refused
records) and settles it, until the queue is closed and empty; a supervisor restarts the
ones that crash."""

from __future__ import annotations

import asyncio
from collections import deque

from market_data_store._feedback import FeedbackEmitter
from market_data_store._queue import WriteQueue
from market_data_store.coordinator.dead_letters import Settlement, describe
from market_data_store.coordinator.held import Held, InFlight
from market_data_store.coordinator.isolation import Isolation
from market_data_store.coordinator.outage import OutageHold
from market_data_store.coordinator.restarts import Restarts
from market_data_store.coordinator.stats import Counters
from market_data_store.exceptions import PermanentBackendError
from market_data_store.receipts import Outcome

__all__ = ["WorkerPool", "cancel"]


class WorkerPool:
    """``count`` worker tasks taking batches of up to ``batch_size`` records from ``queue``
    (or what arrived within ``flush_interval``), holding each in ``flight`` while ``outage``
    writes it, ``isolation`` splits and judges what the database refused and ``settlement``
    settles it; and their supervisor, which restarts crashed workers as ``restarts`` says."""

    def __init__(
        self,
        *,
        name: str,
        count: int,
        batch_size: int,
        flush_interval: float,
        queue: WriteQueue,
        emitter: FeedbackEmitter,
        flight: InFlight,
        counters: Counters,
        settlement: Settlement,
        outage: OutageHold,
        isolation: Isolation,
        restarts: Restarts,
    ) -> None:
        self.count = count
        self._name = name
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue = queue
        self._emitter = emitter
        self._flight = flight
        self._counters = counters
        self._settlement = settlement
        self._outage = outage
        self._isolation = isolation
        self._restarts = restarts
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.supervisor: asyncio.Task[None] | None = None
        """Ends once every worker has ended normally (the queue is closed and empty)."""

    @property
    def alive(self) -> int:
        """Worker tasks running now."""
        return sum(not task.done() for task in self._tasks.values())

    def start(self) -> None:
        """Start the workers and their supervisor."""
        for slot in range(self.count):
            self._spawn(slot, delay=0.0)
        self.supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"{self._name}:supervisor"
        )

    async def cancel(self) -> None:
        """Cancel the supervisor, then the workers (what they held stays in ``flight``)."""
        await cancel(self.supervisor)
        for task in tuple(self._tasks.values()):
            await cancel(task)
        self._tasks.clear()

    def _spawn(self, slot: int, *, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(
            self._work(slot, delay), name=f"{self._name}:worker-{slot}"
        )
        self._tasks[slot] = task

    async def _supervise(self) -> None:
        """Restart crashed workers until every worker has ended normally."""
        while self._tasks:
            await asyncio.wait(tuple(self._tasks.values()), return_when=asyncio.FIRST_COMPLETED)
            for slot, task in tuple(self._tasks.items()):
                if not task.done():
                    continue
                del self._tasks[slot]
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    delay = await self._restarts.crashed(slot, error)
                    self._spawn(slot, delay=delay)

    async def _work(self, slot: int, delay: float) -> None:
        """Write batches until the queue is closed and empty. Resumes the batch a crashed
        predecessor held, if any."""
        if delay:
            await asyncio.sleep(delay)
        held = self._flight.held.get(slot)
        if held is not None:
            await self._process(slot, held)
        while True:
            await self._outage.breaker_not_open()
            records = await self._queue.take(self._batch_size, self._flush_interval)
            if not records:
                return
            start = self._flight.take(len(records))
            held = self._flight.held[slot] = Held(deque([(start, records)]))
            self._emitter.observe(len(self._queue))
            await self._process(slot, held)

    async def _process(self, slot: int, held: Held) -> None:
        """Write a held batch part by part (or crash, keeping what is left held). A part the
        database refuses for good is split until the failing parts stand alone, then judged;
        see "Isolation" in the package docstring."""
        while held.parts:
            start, records = held.parts[0]
            error = await self._outage.write_part(held, records)
            if error is None:
                held.parts.popleft()
                held.wrote = True
                self._settlement.settle(start, len(records), Outcome.WRITTEN)
            elif isinstance(error, PermanentBackendError):
                held.parts.popleft()
                held.attempts = 0
                halves = self._isolation.split(held, start, records)
                if halves:
                    held.parts.extendleft(reversed(halves))
                    self._counters.isolations += 1
                else:
                    held.failed.append((start, records, error))
            else:
                await self._settlement.give_up(held, describe(error))
        await self._isolation.judge(held)
        del self._flight.held[slot]
        self._counters.batches += 1  # settled: every record of it written, refused or given up
        self._restarts.settled(slot)


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for it to end; its own outcome (even an error) is consumed."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

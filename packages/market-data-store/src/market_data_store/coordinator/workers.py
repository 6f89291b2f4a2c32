"""The workers: each takes a batch from the queue, writes it part by part (isolating refused
records) and settles it, until the queue is closed and empty."""

from __future__ import annotations

import asyncio
from collections import deque

from market_data_store.coordinator.held import Held
from market_data_store.coordinator.isolation import Isolation
from market_data_store.coordinator.state import describe
from market_data_store.exceptions import PermanentBackendError
from market_data_store.receipts import Outcome

__all__ = ["Workers"]


class Workers(Isolation):
    """Starts worker tasks and runs their loop."""

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
            held = self._held[slot] = Held(deque([(self._dequeued, records)]))
            self._dequeued += len(records)
            self._emitter.observe(len(self._queue))
            await self._process(slot, held)

    async def _process(self, slot: int, held: Held) -> None:
        """Write a held batch part by part (or crash, keeping what is left held). A part the
        database refuses for good is split until the failing parts stand alone, then judged;
        see "Isolation" in the package docstring."""
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
                    self._counters.isolations += 1
                else:
                    held.failed.append((start, records, error))
            else:
                await self._give_up(held, describe(error))
        await self._judge(held)
        del self._held[slot]
        self._counters.batches += 1  # settled: every record of it written, refused or given up
        self._crash_streak[slot] = 0

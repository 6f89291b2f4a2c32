"""Stopping: wait for the workers to finish the queue (a drain), or cancel them and put what
is queued or in flight in the dead-letter store (else count it as dropped)."""

from __future__ import annotations

import asyncio

import structlog

from market_data_store.chunks import Batch
from market_data_store.coordinator.restarts import Restarts
from market_data_store.receipts import Outcome

__all__ = ["Draining", "cancel"]

logger = structlog.get_logger(__name__)


class Draining(Restarts):
    """The two ways a stop ends the workers: drained, or aborted and salvaged."""

    async def _drained(self, limit: float | None) -> bool:
        """Wait for the workers to finish the queue; False when ``limit`` seconds passed."""
        if self._supervisor is None:
            return True
        supervisor = self._supervisor
        done, _ = await asyncio.wait((supervisor,), timeout=limit)
        if not done:
            logger.warning(
                "the coordinator did not drain in time; stopping without",
                coordinator=self._name,
                drain_timeout=limit,
            )
            return False
        if not supervisor.cancelled() and supervisor.exception() is not None:
            logger.error(
                "the supervisor failed", coordinator=self._name, exc_info=supervisor.exception()
            )
            return False
        return True

    async def _abort(self) -> None:
        """Cancel the workers; dead-letter (else drop) what is queued or was in flight."""
        await cancel(self._supervisor)
        for task in tuple(self._workers.values()):
            await cancel(task)
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
                "stopped without draining: records dropped (no dead-letter store)",
                coordinator=self._name,
                records=len(records),
            )
        self._settle(start, len(records), outcome)


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for it to end; its own outcome (even an error) is consumed."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

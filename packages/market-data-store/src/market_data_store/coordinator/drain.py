"""Stopping: wait for the workers to finish the queue (a drain), or cancel them and put what
is queued or in flight in the dead-letter store (else count it as dropped)."""

from __future__ import annotations

import asyncio

import structlog

from market_data_store._queue import WriteQueue
from market_data_store.chunks import Batch
from market_data_store.coordinator.dead_letters import Settlement
from market_data_store.coordinator.held import InFlight
from market_data_store.coordinator.workers import WorkerPool
from market_data_store.receipts import Outcome

__all__ = ["Drain"]

logger = structlog.get_logger(__name__)


class Drain:
    """The two ways a stop ends the ``pool``'s workers: drained, or aborted and what is left
    in the ``queue`` and in ``flight`` salvaged through ``settlement`` (in parts of up to
    ``batch_size`` records)."""

    def __init__(
        self,
        *,
        name: str,
        batch_size: int,
        pool: WorkerPool,
        queue: WriteQueue,
        flight: InFlight,
        settlement: Settlement,
    ) -> None:
        self._name = name
        self._batch_size = batch_size
        self._pool = pool
        self._queue = queue
        self._flight = flight
        self._settlement = settlement

    async def drained(self, limit: float | None) -> bool:
        """Wait for the workers to finish the queue; False when ``limit`` seconds passed."""
        supervisor = self._pool.supervisor
        if supervisor is None:
            return True
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

    async def abort(self) -> None:
        """Cancel the workers; dead-letter (else drop) what is queued or was in flight."""
        await self._pool.cancel()
        flight = self._flight
        queued = self._queue.take_all()
        first = flight.take(len(queued))
        flight.salvaging = len(queued)
        for offset in range(0, len(queued), self._batch_size):
            part = queued[offset : offset + self._batch_size]
            await self._salvage(first + offset, part, "coordinator stopped before writing", 0)
        for slot, held in tuple(flight.held.items()):
            flight.salvaging += held.size
            del flight.held[slot]
            for start, records in held.parts:
                error = "coordinator stopped during the write"
                await self._salvage(start, records, error, held.attempts)

    async def _salvage(self, start: int, records: Batch, error: str, attempts: int) -> None:
        stored = await self._settlement.dead_letter(records, error, attempts)
        self._flight.salvaging -= len(records)
        if stored:
            outcome = Outcome.DEAD_LETTERED
        elif self._settlement.dead_letters is not None:
            outcome = Outcome.FAILED
        else:
            outcome = Outcome.DROPPED
            logger.warning(
                "stopped without draining: records dropped (no dead-letter store)",
                coordinator=self._name,
                records=len(records),
            )
        self._settlement.settle(start, len(records), outcome)

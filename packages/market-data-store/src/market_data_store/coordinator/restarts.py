"""Supervision: a worker that crashed (a bug, not a database error) is counted and restarted
with a backoff; a batch that crashes workers ``CRASHES_PER_BATCH`` times is given up."""

from __future__ import annotations

import asyncio

import structlog

from market_data_store.coordinator.settings import CRASHES_PER_BATCH, RESTART_BACKOFF
from market_data_store.coordinator.state import describe
from market_data_store.coordinator.workers import Workers

__all__ = ["Restarts"]

logger = structlog.get_logger(__name__)


class Restarts(Workers):
    """The supervisor task's loop and what it does about a crash."""

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
        self._counters.restarts += 1
        streak = self._crash_streak[slot] = self._crash_streak.get(slot, 0) + 1
        logger.error(
            "worker crashed; restarting it", worker=slot, coordinator=self._name, exc_info=error
        )
        held = self._held.get(slot)
        if held is not None:
            held.crashes += 1
            if held.crashes >= CRASHES_PER_BATCH:
                while held.parts:
                    await self._give_up(held, f"worker crashed: {describe(error)}")
                del self._held[slot]
        first, longest = RESTART_BACKOFF
        self._spawn(slot, delay=min(first * 2 ** (streak - 1), longest))

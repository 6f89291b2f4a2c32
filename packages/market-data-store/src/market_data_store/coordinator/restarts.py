"""Restarts: a worker that crashed (a bug, not a database error) is counted and restarted
with a backoff; a batch that crashes workers ``CRASHES_PER_BATCH`` times is given up."""

from __future__ import annotations

import structlog

from market_data_store.coordinator.dead_letters import Settlement, describe
from market_data_store.coordinator.held import InFlight
from market_data_store.coordinator.settings import CRASHES_PER_BATCH, RESTART_BACKOFF
from market_data_store.coordinator.stats import Counters

__all__ = ["Restarts"]

logger = structlog.get_logger(__name__)


class Restarts:
    """What a crash does to the batch the worker held (in ``flight``: kept for its successor,
    or given up through ``settlement``) and how long the restart waits (each worker slot's
    crashes in a row, counted in ``counters``)."""

    def __init__(
        self, *, name: str, flight: InFlight, settlement: Settlement, counters: Counters
    ) -> None:
        self._name = name
        self._flight = flight
        self._settlement = settlement
        self._counters = counters
        self._streaks: dict[int, int] = {}

    async def crashed(self, slot: int, error: BaseException) -> float:
        """Count the crash, settle or keep the batch it held: the delay before the restart."""
        self._counters.restarts += 1
        streak = self._streaks[slot] = self._streaks.get(slot, 0) + 1
        logger.error(
            "worker crashed; restarting it", worker=slot, coordinator=self._name, exc_info=error
        )
        held = self._flight.held.get(slot)
        if held is not None:
            held.crashes += 1
            if held.crashes >= CRASHES_PER_BATCH:
                while held.parts:
                    await self._settlement.give_up(held, f"worker crashed: {describe(error)}")
                del self._flight.held[slot]
        first, longest = RESTART_BACKOFF
        return min(first * 2.0 ** (streak - 1), longest)

    def settled(self, slot: int) -> None:
        """The worker in ``slot`` settled a batch: its crashes are no longer in a row."""
        self._streaks[slot] = 0

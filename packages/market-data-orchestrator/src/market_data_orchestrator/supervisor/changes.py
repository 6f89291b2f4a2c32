"""The supervisor's state-change events, published to callbacks and to live subscribers
(each a bounded queue: a slow reader loses the oldest, never blocks the supervisor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import structlog

from market_data_orchestrator.event_feed import offer
from market_data_orchestrator.supervisor.records import StateChange

__all__ = ["StateChanges"]

logger = structlog.get_logger("market_data_orchestrator.supervisor")


class StateChanges:
    """Fan-out of ``StateChange`` events. Once ``refuse_new`` is called a new subscription
    ends at once; ``end`` ends the current ones after what was published."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[StateChange], None]] = []
        self._queues: set[asyncio.Queue[StateChange | None]] = set()
        self._refusing = False

    def add_listener(self, callback: Callable[[StateChange], None]) -> Callable[[], None]:
        """Call ``callback`` on every state change; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def subscribe(self, *, maxsize: int = 1000) -> AsyncIterator[StateChange]:
        """State changes from now on, until ``end`` (oldest dropped if full)."""
        if self._refusing:
            return
        queue: asyncio.Queue[StateChange | None] = asyncio.Queue(maxsize=maxsize)
        self._queues.add(queue)
        try:
            while (change := await queue.get()) is not None:
                yield change
        finally:
            self._queues.discard(queue)

    def publish(self, change: StateChange) -> None:
        """Hand ``change`` to every listener (a failing one is logged) and subscriber."""
        for callback in list(self._listeners):
            try:
                callback(change)
            except Exception:
                logger.exception("state-change listener failed", job=change.name)
        for queue in self._queues:
            offer(queue, change)

    def refuse_new(self) -> None:
        """From now on a new subscription ends at once."""
        self._refusing = True

    def end(self) -> None:
        """End every current subscription (after what it has not read yet)."""
        for queue in self._queues:
            offer(queue, None)

"""Live status for operators: what the orchestrator sees change, as one stream of events.

``GET /v1/events`` (server-sent events) carries three kinds, each with a JSON ``data`` line:

- ``state``: a job or replica changed state (the supervisor's ``StateChange``);
- ``store``: the orchestrator's view of the store changed: its verdict (hysteresis over
  ``/readyz`` polls), the state the store reports or a component's state
  (:func:`store_view`);
- ``feedback``: a ``FeedbackEvent`` of a store write coordinator (backpressure level, queue
  size, capacity, utilization) as the feedback transport delivered it, heartbeats included,
  so a page can draw the level over time. A new stream starts with the recent ones.

:class:`StatusFeed` fans these out to every subscriber through a bounded queue each (the
oldest dropped when a slow reader falls behind: the page re-reads the REST resources on
every event, so a lost event costs nothing but a point of the chart).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

from market_data_core import FeedbackEvent, HealthComponent

__all__ = ["UNKNOWN", "StatusEvent", "StatusFeed", "offer", "store_view"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One server-sent event: its ``kind`` (``state``, ``store``, ``feedback``) and data."""

    kind: str
    data: dict[str, Any]


class StatusFeed:
    """Fan-out of :class:`StatusEvent` to subscribers (each a bounded queue)."""

    def __init__(self, *, maxsize: int = 1000, history: int = 1200) -> None:
        self._maxsize = maxsize
        self._queues: set[asyncio.Queue[StatusEvent | None]] = set()
        self._closed = False
        self._feedback: deque[StatusEvent] = deque(maxlen=history)

    def recent_feedback(self) -> list[StatusEvent]:
        """The latest ``feedback`` events (``history`` of them: ten minutes of one
        coordinator's heartbeats every 0.5 s), oldest first: a new page's chart."""
        return list(self._feedback)

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        event = StatusEvent(kind, data)
        for queue in self._queues:
            offer(queue, event)

    def feedback(self, message: object) -> None:
        """A feedback transport's listener: backpressure events go out, rates do not."""
        if isinstance(message, FeedbackEvent):
            event = StatusEvent("feedback", message.model_dump(mode="json"))
            self._feedback.append(event)
            for queue in self._queues:
                offer(queue, event)

    async def subscribe(self) -> AsyncIterator[StatusEvent]:
        """Events from now on, until the feed closes."""
        if self._closed:
            return
        queue: asyncio.Queue[StatusEvent | None] = asyncio.Queue(maxsize=self._maxsize)
        self._queues.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._queues.discard(queue)

    def close(self) -> None:
        """End every subscription."""
        self._closed = True
        for queue in self._queues:
            offer(queue, None)


UNKNOWN = "unknown"
"""A component's state when the store's health cannot be read."""


def store_view(component: HealthComponent, status: Any, *, readable: bool = True) -> dict[str, Any]:
    """What the orchestrator knows of the store: its component in the orchestrator's health
    (state, verdict, reason) and the components of the store's last ``HealthStatus``.

    ``readable`` False: the last poll got no ``HealthStatus`` (no answer, not JSON, off
    schema): the components are those last reported, each ``unknown`` (never the last
    healthy state), and ``reported`` is ``None``."""
    components = [] if status is None else status.components
    return {
        "state": str(component.state),
        "verdict": component.details.get("verdict"),
        "reason": component.details.get("reason"),
        "url": component.details.get("url"),
        "reported": None if status is None or not readable else str(status.state),
        "components": [
            {
                "name": c.name,
                "state": str(c.state) if readable else UNKNOWN,
                "required": c.required,
            }
            for c in components
        ],
    }


def offer(queue: asyncio.Queue[T], item: T) -> None:
    """Put ``item`` on a bounded queue, dropping the oldest when it is full (a slow reader
    of live events loses old ones, never blocks the publisher)."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(item)

"""The in-memory feedback bus: the default transport inside one process.

Publishing never blocks and never fails because of a subscriber: each subscriber has its
own bounded queue; when a slow subscriber's queue is full its oldest message is dropped
(telemetry is state, so the newest message is the one that matters) and counted. A
handler that raises is logged and counted, and keeps receiving.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

from market_data_core.exceptions import ConfigurationError
from market_data_core.telemetry import BackpressureLevel, FeedbackEvent, RateAdjustment
from market_data_core.transports.tracker import FeedbackTracker

__all__ = ["Handler", "InMemoryFeedbackBus", "Subscription"]

logger = logging.getLogger(__name__)

Message = FeedbackEvent | RateAdjustment
Handler = Callable[[Message], Awaitable[None] | None]


class Subscription:
    """A subscriber's bounded queue of messages; iterate it with ``async for``."""

    def __init__(self, bus: InMemoryFeedbackBus, *, name: str, maxsize: int) -> None:
        if maxsize < 1:
            msg = f"subscription queue size must be >= 1, got {maxsize}"
            raise ConfigurationError(msg)
        self.name = name
        self._bus = bus
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize)
        self.received = 0
        self.dropped = 0
        self.errors = 0
        self.closed = False

    def offer(self, message: Message) -> None:
        """Enqueue without waiting; drop the oldest message when full."""
        if self.closed:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(message)
        self.received += 1

    def close(self) -> None:
        """Stop receiving; an ``async for`` over it ends after the queued messages."""
        if self.closed:
            return
        self.closed = True
        self._bus._remove(self)
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            yield message

    def pending(self) -> int:
        return self._queue.qsize()


class InMemoryFeedbackBus:
    """Publish/subscribe for telemetry inside one process; a ``FeedbackPublisher`` and a
    ``FeedbackSubscriber``. Stale events (see ``FeedbackTracker``) are not delivered."""

    def __init__(
        self,
        *,
        ttl: float = 15.0,
        queue_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = FeedbackTracker(ttl=ttl, clock=clock)
        self._queue_size = queue_size
        self._subscriptions: list[Subscription] = []
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._own_subscription: Subscription | None = None

    async def publish(self, message: Message) -> None:
        """Deliver ``message`` to every subscriber; never blocks on them."""
        if not self.tracker.observe(message):
            return
        for subscription in tuple(self._subscriptions):
            subscription.offer(message)

    def subscribe(self, *, name: str = "subscriber", queue_size: int | None = None) -> Subscription:
        """A new subscription that receives every message published from now on."""
        subscription = Subscription(self, name=name, maxsize=queue_size or self._queue_size)
        self._subscriptions.append(subscription)
        return subscription

    def add_handler(self, handler: Handler, *, name: str | None = None) -> Subscription:
        """Call ``handler`` (sync or async) for every message, in a task of its own.

        Must be called with a running event loop. Errors raised by the handler are logged
        and counted in ``Subscription.errors``; the handler keeps receiving.
        """
        label = name or str(getattr(handler, "__qualname__", "handler"))
        subscription = self.subscribe(name=label)
        task = asyncio.get_running_loop().create_task(
            _run_handler(subscription, handler), name=f"feedback-handler:{label}"
        )
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)
        return subscription

    def level(self, coordinator_id: str) -> BackpressureLevel | None:
        return self.tracker.level(coordinator_id)

    def latest(self, coordinator_id: str) -> FeedbackEvent | None:
        return self.tracker.latest(coordinator_id)

    def latest_rate(self, provider: str) -> RateAdjustment | None:
        return self.tracker.latest_rate(provider)

    def __aiter__(self) -> AsyncIterator[Message]:
        if self._own_subscription is None:
            self._own_subscription = self.subscribe(name="bus-iterator")
        return aiter(self._own_subscription)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    async def aclose(self) -> None:
        """Close every subscription and wait for handlers to finish their queued messages."""
        for subscription in tuple(self._subscriptions):
            subscription.close()
        if self._handler_tasks:
            await asyncio.gather(*self._handler_tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)


async def _run_handler(subscription: Subscription, handler: Handler) -> None:
    async for message in subscription:
        try:
            result = handler(message)
            if inspect.isawaitable(result):
                await result
        except Exception:
            subscription.errors += 1
            logger.exception(
                "feedback handler failed; it keeps receiving",
                extra={"handler": subscription.name, "telemetry": type(message).__name__},
            )

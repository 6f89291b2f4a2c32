"""Feedback links feed ``FeedbackEvent``s from a transport to one or several controllers:
:class:`BusFeedbackLink` (an in-process ``InMemoryFeedbackBus``, e.g. ``store.bus``),
:class:`RedisFeedbackLink` (core's Redis streams, ``market-data-pipeline[redis]``) and
:class:`SseFeedbackLink` (a store service's ``/v1/feedback/stream``,
``market-data-pipeline[http]``); :func:`link_feedback` builds and combines them. Each is an
async context manager (or ``start()`` / ``stop()``). A link that fails logs it and keeps
trying; the controllers hold their rate meanwhile. Secrets in URLs are never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Self

import structlog
from pydantic import SecretStr

from market_data_core import FeedbackEvent, InMemoryFeedbackBus, RateController
from market_data_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from market_data_core.transports.memory import Subscription
    from market_data_core.transports.redis import RedisFeedbackSubscriber

__all__ = [
    "BusFeedbackLink",
    "FeedbackLink",
    "FeedbackLinks",
    "RedisFeedbackLink",
    "SseFeedbackLink",
    "link_feedback",
]

logger = structlog.get_logger("market_data_pipeline.backpressure.links")

Controllers = RateController | Sequence[RateController]


class FeedbackLink:
    """Feeds ``FeedbackEvent``s from one transport to controllers, in a task of its own.

    Subclasses yield events from :meth:`_events`. Whatever goes wrong (a transport, a
    controller) is logged and counted in ``errors``; the controllers hold their rate.
    """

    kind = "link"

    def __init__(self, controllers: Controllers) -> None:
        self.controllers = _as_list(controllers)
        self.received = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is None:
            await self._open()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"feedback-link:{self.kind}"
            )

    async def stop(self) -> None:
        """Stop the task and release the transport. A client library may turn the
        cancellation into an error it handles (redis-py does, inside a command), so the
        task also stops on a flag, and is cancelled again until it has ended."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        self._stopping = False
        await self._close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def deliver(self, event: FeedbackEvent) -> None:
        """Give ``event`` to every controller; one failing never stops the others."""
        self.received += 1
        for controller in self.controllers:
            try:
                await controller.on_feedback(event)
            except Exception as exc:  # a link never crashes the pipeline
                self.errors += 1
                logger.warning(
                    "a rate controller failed on feedback; its rate is held",
                    link=self.kind,
                    controller=type(controller).__name__,
                    error=f"{type(exc).__name__}: {exc}",
                )

    async def _run(self) -> None:
        try:
            async for event in self._events():
                await self.deliver(event)
                if self._stopping:
                    return
        except Exception as exc:  # logged; the rate is held
            self.errors += 1
            logger.error(
                "feedback link stopped; rates are held", link=self.kind, error=type(exc).__name__
            )

    async def _open(self) -> None:
        """Connect or subscribe (before the task starts)."""

    async def _close(self) -> None:
        """Release what ``_open`` took."""

    def _events(self) -> AsyncIterator[FeedbackEvent]:
        raise NotImplementedError


class BusFeedbackLink(FeedbackLink):
    """From an in-process ``InMemoryFeedbackBus`` (``store.bus``). The latest event of
    every coordinator known to the bus when the link starts is delivered first, then every
    new one."""

    kind = "bus"

    def __init__(self, bus: InMemoryFeedbackBus, controllers: Controllers) -> None:
        super().__init__(controllers)
        self.bus = bus
        self._subscription: Subscription | None = None
        self._known: list[FeedbackEvent] = []

    async def _open(self) -> None:
        self._subscription = self.bus.subscribe(name="pipeline-feedback")
        latest = (self.bus.latest(cid) for cid in self.bus.tracker.coordinators())
        self._known = [event for event in latest if event is not None]

    async def _close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    async def _events(self) -> AsyncIterator[FeedbackEvent]:
        subscription = self._subscription
        if subscription is None:
            return
        known, self._known = self._known, []
        for event in known:
            yield event
        async for message in subscription:
            if isinstance(message, FeedbackEvent):
                yield message


class RedisFeedbackLink(FeedbackLink):
    """From core's Redis feedback stream (needs ``market-data-pipeline[redis]``); the
    subscriber reconnects by itself after Redis goes away."""

    kind = "redis"

    def __init__(
        self,
        url: SecretStr | str,
        controllers: Controllers,
        *,
        stream: str | None = None,
        ttl: float = 15.0,
        block_ms: int = 1000,
    ) -> None:
        super().__init__(controllers)
        self._url = url if isinstance(url, SecretStr) else SecretStr(url)
        self.stream = stream
        self.ttl = ttl
        self.block_ms = block_ms
        self.subscriber: RedisFeedbackSubscriber | None = None

    async def _open(self) -> None:
        try:
            from market_data_core.transports.redis import (  # noqa: PLC0415 - optional extra
                DEFAULT_STREAM,
                RedisFeedbackSubscriber,
            )
        except ImportError as exc:
            msg = "Redis feedback needs redis: pip install 'market-data-pipeline[redis]'"
            raise ConfigurationError(msg) from exc
        try:
            self.subscriber = RedisFeedbackSubscriber.from_url(
                self._url.get_secret_value(),
                stream=self.stream or DEFAULT_STREAM,
                ttl=self.ttl,
                block_ms=self.block_ms,
            )
        except ValueError:
            msg = "invalid Redis URL for feedback (expected redis://, rediss:// or unix://)"
            raise ConfigurationError(msg) from None
        await self.subscriber.start()

    async def _close(self) -> None:
        if self.subscriber is not None:
            await self.subscriber.aclose()
            self.subscriber = None

    async def _events(self) -> AsyncIterator[FeedbackEvent]:
        if self.subscriber is None:
            return
        async for message in self.subscriber:
            if isinstance(message, FeedbackEvent):
                yield message


class SseFeedbackLink(FeedbackLink):
    """From a store service's ``GET {url}/v1/feedback/stream`` (needs
    ``market-data-pipeline[http]``), reconnecting with capped exponential backoff."""

    kind = "sse"

    def __init__(
        self,
        url: str,
        controllers: Controllers,
        *,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        read_timeout: float = 60.0,
    ) -> None:
        super().__init__(controllers)
        try:
            from market_data_pipeline.backpressure.sse import SseFeedbackReader  # noqa: PLC0415 - httpx
        except ImportError as exc:
            msg = "store SSE feedback needs httpx: pip install 'market-data-pipeline[http]'"
            raise ConfigurationError(msg) from exc
        self.reader = SseFeedbackReader(
            url, min_backoff=min_backoff, max_backoff=max_backoff, read_timeout=read_timeout
        )

    @property
    def connected(self) -> bool:
        return self.reader.connected

    def _events(self) -> AsyncIterator[FeedbackEvent]:
        return self.reader.events()


class FeedbackLinks:
    """Several links started and stopped together (what :func:`link_feedback` returns)."""

    def __init__(self, links: Sequence[FeedbackLink]) -> None:
        self.links = tuple(links)

    @property
    def received(self) -> int:
        return sum(link.received for link in self.links)

    @property
    def errors(self) -> int:
        return sum(link.errors for link in self.links)

    async def start(self) -> None:
        started: list[FeedbackLink] = []
        try:
            for link in self.links:
                await link.start()
                started.append(link)
        except BaseException:
            for link in reversed(started):
                await link.stop()
            raise

    async def stop(self) -> None:
        for link in reversed(self.links):
            await link.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def link_feedback(
    controllers: Controllers,
    *,
    bus: InMemoryFeedbackBus | None = None,
    redis_url: SecretStr | str | None = None,
    sse_url: str | None = None,
    redis_stream: str | None = None,
    **options: Any,
) -> FeedbackLinks:
    """Links from every feed given to ``controllers`` (one or several): an in-process
    ``bus``, a Redis feedback stream at ``redis_url`` (``redis_stream``, default
    ``md:feedback``) and/or a store service's SSE stream at ``sse_url`` (its base URL).

    Use as ``async with link_feedback(controller, bus=store.bus): ...`` or
    ``start()`` / ``stop()``. ``options`` go to :class:`SseFeedbackLink` (``min_backoff``,
    ``max_backoff``, ``read_timeout``).
    """
    links: list[FeedbackLink] = []
    if bus is not None:
        links.append(BusFeedbackLink(bus, controllers))
    if redis_url is not None:
        links.append(RedisFeedbackLink(redis_url, controllers, stream=redis_stream))
    if sse_url is not None:
        links.append(SseFeedbackLink(sse_url, controllers, **options))
    if not links:
        msg = "link_feedback needs a feed: bus=, redis_url= or sse_url="
        raise ConfigurationError(msg)
    return FeedbackLinks(links)


def _as_list(controllers: Controllers) -> list[RateController]:
    found = [controllers] if isinstance(controllers, RateController) else list(controllers)
    if not found:
        msg = "a feedback link needs at least one rate controller"
        raise ConfigurationError(msg)
    return found

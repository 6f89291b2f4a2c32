"""Follow the feedback transport: the latest backpressure per coordinator and rate per provider.

``FeedbackWatcher`` reads the Redis feedback stream (core ``RedisFeedbackSubscriber``), a
store service's server-sent events (``GET {url}/v1/feedback/stream``, reconnecting with
capped backoff) or an in-process ``InMemoryFeedbackBus``. Ordering and staleness are the
transport's ``FeedbackTracker``'s: an event with a lower ``seq`` than one already seen from
the same publisher is dropped, and a coordinator silent past the TTL reads as *unknown*.

The transport is not required: when it is unreachable the watcher's ``component()`` is
``degraded`` (never unhealthy), and the last known values stay visible in ``snapshot()``.
``reason()`` says in words why no current level can be heard (unreachable, nothing
reported yet, silent coordinators); :data:`NO_TRANSPORT` is the reason when the deployment
follows no transport at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Self
from urllib.parse import urlsplit

import structlog

from market_data_core import (
    BackpressureLevel,
    FeedbackEvent,
    FeedbackTracker,
    HealthComponent,
    HealthState,
    InMemoryFeedbackBus,
    RateAdjustment,
)
from market_data_core.exceptions import ConfigurationError

__all__ = ["NO_TRANSPORT", "FeedbackWatcher", "Message", "unconfigured_snapshot"]

logger = structlog.get_logger(__name__)

Message = FeedbackEvent | RateAdjustment
Listener = Callable[[Message], None]

NO_TRANSPORT = (
    "no feedback transport configured: add `feedback:` to the deployment"
    " (store_url: the store service's URL, or redis_url)"
)
"""Why a deployment without a ``feedback`` transport shows no backpressure level."""


def unconfigured_snapshot() -> dict[str, Any]:
    """``GET /v1/feedback`` of an orchestrator that follows no feedback transport."""
    return {"transport": None, "connected": False, "reason": NO_TRANSPORT}


def where(url: str) -> str:
    """``scheme://host:port/path`` of ``url``: no user, password or query (they may be
    secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else "<url>"


class FeedbackWatcher:
    """The latest telemetry from a feedback transport, for the API, metrics and health.

    Build it with ``from_redis`` or ``from_bus``; ``async with watcher:`` starts reading.
    """

    def __init__(
        self,
        tracker: FeedbackTracker,
        messages: AsyncIterable[Message],
        *,
        transport: str,
        source: str | None = None,
        connected: Callable[[], bool] = lambda: True,
        last_error: Callable[[], str | None] = lambda: None,
        start: Callable[[], Awaitable[None]] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
        name: str = "feedback_transport",
    ) -> None:
        self.tracker = tracker
        self.transport = transport
        self.source = source or transport
        """Where the feedback comes from, fit to show (no password)."""
        self.name = name
        self._messages = messages
        self._connected = connected
        self._last_error = last_error
        self._start = start
        self._close = close
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._listeners: list[Listener] = []
        self.received = 0

    @classmethod
    def from_redis(cls, url: str, *, stream: str = "md:feedback", **kwargs: Any) -> Self:
        """Follow the Redis stream at ``url`` (needs the ``redis`` extra). ``kwargs`` go to
        ``RedisFeedbackSubscriber`` (``ttl``, ``block_ms``, ``from_start``...)."""
        try:
            from market_data_core.transports.redis import RedisFeedbackSubscriber  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the install
            msg = "a Redis feedback transport needs market-data-orchestrator[redis]"
            raise ConfigurationError(msg) from exc
        subscriber = RedisFeedbackSubscriber.from_url(url, stream=stream, **kwargs)
        return cls(
            subscriber.tracker,
            subscriber,
            transport="redis",
            source=f"{where(url)} (stream {stream})",
            connected=lambda: subscriber.connected,
            last_error=lambda: subscriber.last_error,
            start=subscriber.start,
            close=subscriber.aclose,
        )

    @classmethod
    def from_store(cls, url: str, *, ttl: float = 15.0, **kwargs: Any) -> Self:
        """Follow a store service's ``GET {url}/v1/feedback/stream`` (server-sent events; the
        store sends its latest event first, then every event and heartbeat), reconnecting
        with capped exponential backoff while the store is away. ``kwargs`` go to the
        reader (``min_backoff``, ``max_backoff``, ``read_timeout``)."""
        # the pipeline's reader (the one `mdp run --store-feedback-url` follows with): the
        # orchestrator depends on market-data-pipeline, released with it
        from market_data_pipeline.backpressure.sse import SseFeedbackReader  # noqa: PLC0415

        reader = SseFeedbackReader(url, **kwargs)
        tracker = FeedbackTracker(ttl=ttl)

        async def accepted() -> AsyncIterator[Message]:
            async for event in reader.events():
                if tracker.observe(event):
                    yield event

        return cls(
            tracker,
            accepted(),
            transport="sse",
            source=reader.target,
            connected=lambda: reader.connected,
            last_error=lambda: reader.last_error,
        )

    @classmethod
    def from_bus(cls, bus: InMemoryFeedbackBus) -> Self:
        """Follow an in-process bus (always connected)."""
        subscription = bus.subscribe(name="orchestrator")

        async def close() -> None:
            subscription.close()

        return cls(
            bus.tracker, subscription, transport="memory", source="the in-process bus", close=close
        )

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every accepted message (for a server-sent events stream)."""
        self._listeners.append(listener)

    @property
    def connected(self) -> bool:
        return self._connected()

    def latest(self, coordinator_id: str) -> FeedbackEvent | None:
        return self.tracker.latest(coordinator_id)

    def latest_rate(self, provider: str) -> RateAdjustment | None:
        return self.tracker.latest_rate(provider)

    def events(self) -> list[FeedbackEvent]:
        """The latest event of every coordinator ever heard from (however old)."""
        return [e for cid in self.tracker.coordinators() if (e := self.tracker.latest(cid))]

    def rates(self) -> list[RateAdjustment]:
        return [r for p in self.tracker.providers() if (r := self.tracker.latest_rate(p))]

    def reason(self) -> str | None:
        """Why no current level can be heard, in words (``None``: every coordinator heard
        from reports within the TTL)."""
        if not self.connected:
            error = self._last_error()
            if error:
                return f"feedback from {self.source} unreachable: {error}"
            return f"connecting to {self.source}"
        coordinators = self.tracker.coordinators()
        if not coordinators:
            return f"connected to {self.source}: no feedback report yet"
        stale = [cid for cid in coordinators if self.tracker.is_stale(cid)]
        if stale:
            silent = ", ".join(stale)
            return f"no report from {silent} for over {self.tracker.ttl:g} s ({self.source})"
        return None

    def snapshot(self) -> dict[str, Any]:
        """What the API shows: transport state, and the latest per coordinator and provider
        (``level`` is the current level, ``null`` when the coordinator is silent past TTL);
        ``reason``: see :meth:`reason`."""
        coordinators = {
            event.coordinator_id: {
                **event.model_dump(mode="json"),
                "current_level": _value(self.tracker.level(event.coordinator_id)),
                "stale": self.tracker.is_stale(event.coordinator_id),
                "age_seconds": self.tracker.age(event.coordinator_id),
            }
            for event in self.events()
        }
        return {
            "transport": self.transport,
            "source": self.source,
            "connected": self.connected,
            "last_error": self._last_error(),
            "reason": self.reason(),
            "received": self.received,
            "dropped_stale": self.tracker.dropped_stale,
            "worst_level": _value(self.tracker.worst_level()),
            "coordinators": coordinators,
            "providers": {rate.provider: rate.model_dump(mode="json") for rate in self.rates()},
        }

    def component(self) -> HealthComponent:
        """The transport as an optional component: degraded when unreachable or when a
        coordinator has gone silent, healthy otherwise."""
        stale = [cid for cid in self.tracker.coordinators() if self.tracker.is_stale(cid)]
        state = HealthState.HEALTHY
        if not self.connected or stale:
            state = HealthState.DEGRADED
        return HealthComponent(
            name=self.name,
            state=state,
            required=False,
            details={
                "transport": self.transport,
                "source": self.source[:256],
                "connected": self.connected,
                "last_error": self._last_error(),
                "reason": (self.reason() or "")[:256] or None,
                "coordinators": len(self.tracker.coordinators()),
                "stale_coordinators": ",".join(stale)[:256] or None,
                "worst_level": _value(self.tracker.worst_level()),
            },
        )

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checking after every accepted message
        (bound it with ``asyncio.timeout``)."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _consume(self) -> None:
        async for message in self._messages:
            self.received += 1
            for listener in tuple(self._listeners):
                try:
                    listener(message)
                except Exception:
                    logger.exception("feedback listener failed")
            async with self._changed:
                self._changed.notify_all()

    async def start(self) -> None:
        if self._task is None:
            if self._start is not None:
                await self._start()
            self._task = asyncio.get_running_loop().create_task(
                self._consume(), name="feedback-watcher"
            )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._close is not None:
            await self._close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _value(level: BackpressureLevel | None) -> str | None:
    return None if level is None else level.value

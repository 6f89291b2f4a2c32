"""Store backpressure -> provider rate: the pipeline's half of the feedback loop.

:class:`FeedbackRateController` is core's ``RateController`` for one provider (or one job):
``ok`` -> full rate, ``soft`` -> reduced, ``hard`` -> paused. Providers call
``await acquire(n)`` before emitting ``n`` records; the runtime passes the controller as
``GraphRuntime(graph, rate=controller)``.

- Paused: ``acquire`` waits on an ``asyncio.Event`` until the store leaves ``hard``.
- Reduced, with a ``base_rate``: a token bucket at ``base_rate * scale`` records/s.
  Without one (as fast as possible), the controller keeps an EMA of the throughput it
  grants at full speed; when ``soft`` begins it caps the rate at ``soft_scale`` times that
  (if nothing was measured yet, the first measured window sets the cap).
- Stale events are dropped: per coordinator, an event must supersede the last accepted one
  (higher ``seq``, or the same ``seq`` with a newer ``ts``, see core's ``FeedbackTracker``).
  A restarted coordinator starts its ``seq`` again: its events are accepted when they come
  from another publisher instance, when the previous state is older than ``ttl``, or (when
  the publisher is not known) when the lower ``seq`` carries a newer ``ts``.
- Silence longer than ``ttl`` makes the state *unknown* (``stale``); the rate is held, it
  never goes back to full speed on its own.
- Following no particular coordinator (``coordinator_id=None``), the worst level of every
  coordinator heard from applies.

Feedback links feed ``FeedbackEvent``s from a transport to one or several controllers:
:class:`BusFeedbackLink` (an in-process ``InMemoryFeedbackBus``, e.g. ``store.bus``),
:class:`RedisFeedbackLink` (core's Redis streams, ``market-data-pipeline[redis]``) and
:class:`SseFeedbackLink` (a store service's ``/v1/feedback/stream``,
``market-data-pipeline[http]``); :func:`link_feedback` builds and combines them. Each is an
async context manager (or ``start()`` / ``stop()``). A link that fails logs it and keeps
trying; the controllers hold their rate meanwhile. Secrets in URLs are never logged.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, Self

import structlog
from pydantic import SecretStr, ValidationError

from market_data_core import (
    BackpressureLevel,
    FeedbackEvent,
    InMemoryFeedbackBus,
    RateAdjustment,
    RateController,
)
from market_data_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from market_data_core.transports.memory import Subscription
    from market_data_core.transports.redis import RedisFeedbackSubscriber
    from market_data_pipeline.metrics import PipelineMetrics

__all__ = [
    "BusFeedbackLink",
    "FeedbackLink",
    "FeedbackLinks",
    "FeedbackRateController",
    "RatePublisher",
    "RedisFeedbackLink",
    "SseFeedbackLink",
    "link_feedback",
]

logger = structlog.get_logger("market_data_pipeline.backpressure")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RatePublisher(Protocol):
    """Where rate adjustments go: any core ``FeedbackPublisher`` (``InMemoryFeedbackBus``,
    ``RedisFeedbackPublisher``, whose ``publish`` returns whether it was sent)."""

    def publish(self, message: RateAdjustment, /) -> Awaitable[object]: ...


_EMA_ALPHA = 0.5
_EPSILON = 1e-9


@dataclass(slots=True)
class _Heard:
    """The last accepted event of a coordinator, who published it and when it arrived."""

    event: FeedbackEvent
    publisher: str | None
    received_at: float


class FeedbackRateController:
    """A ``RateController`` driven by write-coordinator feedback; see the module docstring.

    ``provider`` names what is controlled (in ``RateAdjustment``s and metrics).
    ``coordinator_id`` follows one coordinator (``None``: the worst of all). ``soft_scale``
    is the fraction of the full rate under ``soft``. ``base_rate`` is the full rate in
    records/s (``None``: unlimited). ``burst_seconds`` of records may go at once when the
    bucket is full. ``ttl`` is the silence after which the state is unknown.
    ``measure_window`` is the window (seconds) of the throughput EMA used when
    ``base_rate`` is ``None``. ``publisher`` receives every ``RateAdjustment``;
    ``metrics`` gets the ``scale`` gauge and the ``pauses`` counter. ``clock`` (monotonic
    seconds) and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        provider: str,
        *,
        coordinator_id: str | None = None,
        soft_scale: float = BackpressureLevel.SOFT.default_scale,
        base_rate: float | None = None,
        burst_seconds: float = 1.0,
        ttl: float = 15.0,
        measure_window: float = 0.5,
        publisher: RatePublisher | None = None,
        metrics: PipelineMetrics | None = None,
        publish_timeout: float = 2.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        _check_provider(provider)
        _check(soft_scale=soft_scale, base_rate=base_rate, burst_seconds=burst_seconds)
        _check_positive(ttl=ttl, measure_window=measure_window, publish_timeout=publish_timeout)
        self.provider = provider
        self.coordinator_id = coordinator_id
        self.soft_scale = soft_scale
        self.base_rate = base_rate
        self.burst_seconds = burst_seconds
        self.ttl = ttl
        self.measure_window = measure_window
        self.publisher = publisher
        self.metrics = metrics
        self.publish_timeout = publish_timeout
        self._clock = clock
        self._sleep = sleep
        self._heard: dict[str, _Heard] = {}
        self._level: BackpressureLevel | None = None
        self._scale = 1.0
        self._running = asyncio.Event()
        self._running.set()
        self._changed = asyncio.Event()
        self._closed = False
        self._last_adjustment: RateAdjustment | None = None
        # token bucket (records/s; None = unlimited)
        self._rate: float | None = base_rate
        self._tokens = self._capacity()
        self._refilled_at = clock()
        # throughput measurement at full speed (records/s)
        self._window_start: float | None = None
        self._window_count = 0
        self._measured: float | None = None
        # counters
        self.accepted = 0
        self.dropped_stale = 0
        self.ignored = 0
        self._pauses = 0
        self._paused_total = 0.0
        self._paused_since: float | None = None
        if metrics is not None:
            metrics.scale.labels(provider=provider).set(1.0)

    # -- state --------------------------------------------------------------------------

    @property
    def scale(self) -> float:
        """The fraction of the full rate now: 1 (ok), ``soft_scale`` (soft) or 0 (paused)."""
        return self._scale

    @property
    def paused(self) -> bool:
        return self._scale == 0

    @property
    def level(self) -> BackpressureLevel | None:
        """The level the current rate follows (``None`` before any feedback)."""
        return self._level

    @property
    def rate(self) -> float | None:
        """The records/s ``acquire`` grants now at most: 0 while paused, ``None`` when
        unlimited."""
        return 0.0 if self._scale == 0 else self._rate

    @property
    def measured_rate(self) -> float | None:
        """The EMA of the throughput granted at full speed (only without ``base_rate``)."""
        return self._measured

    @property
    def stale(self) -> bool:
        """True when a followed coordinator has been silent longer than ``ttl`` (or none
        was ever heard): the state is unknown and the rate is held."""
        now = self._clock()
        heard = [h for cid, h in self._heard.items() if self._follows(cid)]
        return not heard or any(now - h.received_at > self.ttl for h in heard)

    @property
    def pauses(self) -> int:
        """How many times the provider was paused (hard backpressure)."""
        return self._pauses

    @property
    def paused_seconds(self) -> float:
        """Time spent paused in total, the current pause included."""
        ongoing = 0.0 if self._paused_since is None else self._clock() - self._paused_since
        return self._paused_total + ongoing

    @property
    def last_adjustment(self) -> RateAdjustment | None:
        return self._last_adjustment

    # -- feedback -----------------------------------------------------------------------

    async def on_feedback(
        self, event: FeedbackEvent, *, publisher: str | None = None
    ) -> RateAdjustment | None:
        """Apply ``event``; return (and publish) the ``RateAdjustment`` when the scale changed.

        ``publisher`` is the id of the publishing instance when the transport knows it.
        Events of other coordinators than ``coordinator_id``, and stale events, change
        nothing.
        """
        if self._closed:
            return None
        if not self._follows(event.coordinator_id):
            self.ignored += 1
            return None
        if not self._accept(event, publisher):
            self.dropped_stale += 1
            return None
        self.accepted += 1
        cause = self._cause(event)
        self._level = cause.level
        scale = _scale_of(cause.level, self.soft_scale)
        if scale == self._scale:
            return None
        self._set_scale(scale)
        adjustment = self._adjustment(cause)
        logger.info(
            "provider rate changed",
            provider=self.provider,
            scale=scale,
            backpressure=str(cause.level),
            coordinator=cause.coordinator_id,
        )
        await self._publish(adjustment)
        return adjustment

    def _follows(self, coordinator_id: str) -> bool:
        return self.coordinator_id is None or coordinator_id == self.coordinator_id

    def _accept(self, event: FeedbackEvent, publisher: str | None) -> bool:
        now = self._clock()
        previous = self._heard.get(event.coordinator_id)
        if (
            previous is None
            or event.supersedes(previous.event)
            or now - previous.received_at > self.ttl
            or _restarted(previous, event, publisher)
        ):
            self._heard[event.coordinator_id] = _Heard(event, publisher, now)
            return True
        return False

    def _cause(self, event: FeedbackEvent) -> FeedbackEvent:
        """The event whose level applies: ``event``, or a worse one of another coordinator
        (their last known levels are held, however old)."""
        worst = event
        for heard in self._heard.values():
            if heard.event.level.severity > worst.level.severity:
                worst = heard.event
        return worst

    def _adjustment(self, cause: FeedbackEvent) -> RateAdjustment:
        ts = datetime.now(UTC)
        if self._last_adjustment is not None:
            ts = max(ts, self._last_adjustment.ts)
        reason = (
            f"{cause.source} coordinator {cause.coordinator_id} at {cause.level} "
            f"(queue {cause.utilization:.0%})"
        )
        self._last_adjustment = RateAdjustment(
            provider=self.provider,
            scale=self._scale,
            reason=reason,
            ts=ts,
            level=cause.level,
            coordinator_id=cause.coordinator_id,
        )
        return self._last_adjustment

    async def _publish(self, adjustment: RateAdjustment) -> None:
        if self.publisher is None:
            return
        try:
            async with asyncio.timeout(self.publish_timeout):
                await self.publisher.publish(adjustment)
        except Exception as exc:  # best effort: a transport never stops the rate
            logger.warning(
                "publishing a rate adjustment failed",
                provider=self.provider,
                error=type(exc).__name__,
            )

    # -- the rate -----------------------------------------------------------------------

    def _set_scale(self, scale: float) -> None:
        now = self._clock()
        previous = self._scale
        self._scale = scale
        if scale == 0:
            self._pauses += 1
            self._paused_since = now
            self._running.clear()
            if self.metrics is not None:
                self.metrics.pauses.labels(provider=self.provider).inc()
        else:
            if previous == 0 and self._paused_since is not None:
                self._paused_total += now - self._paused_since
                self._paused_since = None
            self._set_rate(self._limit(scale, now), now)
            self._running.set()
        self._window_start, self._window_count = None, 0
        if self.metrics is not None:
            self.metrics.scale.labels(provider=self.provider).set(scale)
        self._notify()

    def _limit(self, scale: float, now: float) -> float | None:
        """Records/s at ``scale`` (> 0); ``None``: unlimited (or not measured yet)."""
        if self.base_rate is not None:
            return self.base_rate * scale
        if scale == 1:
            return None
        measured = self._measured
        if measured is None and self._window_start is not None and now > self._window_start:
            measured = self._window_count / (now - self._window_start)
            self._measured = measured or None
        return measured * scale if measured else None

    def _set_rate(self, rate: float | None, now: float) -> None:
        if self._rate is None:
            self._tokens = 0.0  # coming from unlimited: no burst credit
        else:
            self._refill(now)
        self._rate = rate
        self._refilled_at = now
        self._tokens = min(self._tokens, self._capacity())

    def _capacity(self) -> float:
        return math.inf if self._rate is None else max(self._rate * self.burst_seconds, 1.0)

    def _refill(self, now: float) -> None:
        if self._rate is not None:
            elapsed = max(now - self._refilled_at, 0.0)
            self._tokens = min(self._capacity(), self._tokens + elapsed * self._rate)
        self._refilled_at = now

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def acquire(self, count: int = 1) -> None:
        """Wait until ``count`` more records may be emitted: while paused until the store
        leaves ``hard``; under a finite rate until the token bucket allows them."""
        if count <= 0:
            return
        while not self._closed:
            if not self._running.is_set():
                await self._running.wait()
                continue
            now = self._clock()
            if self._rate is None:
                self._measure(count, now)
                return
            self._refill(now)
            need = min(float(count), self._capacity())
            if self._tokens + _EPSILON >= need:
                self._tokens -= count  # may go below 0: the next acquire waits for the debt
                return
            await self._wait((need - self._tokens) / self._rate)

    def _measure(self, count: int, now: float) -> None:
        """Feed the full-speed throughput EMA; under ``soft`` without a measurement yet,
        the first complete window sets the cap."""
        if self._window_start is None:
            self._window_start, self._window_count = now, count
            return
        elapsed = now - self._window_start
        if elapsed >= self.measure_window:
            sample = self._window_count / elapsed
            measured = self._measured
            self._measured = (
                sample if measured is None else _EMA_ALPHA * sample + (1 - _EMA_ALPHA) * measured
            )
            self._window_start, self._window_count = now, 0
            if self._scale < 1 and self._measured > 0:
                self._set_rate(self._measured * self._scale, now)
        self._window_count += count

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less when the rate changes meanwhile."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            changed.cancel()

    async def close(self) -> None:
        """Stop following feedback and release every waiter; ``acquire`` no longer limits."""
        if self._closed:
            return
        self._closed = True
        if self._paused_since is not None:
            self._paused_total += self._clock() - self._paused_since
            self._paused_since = None
        self._running.set()
        self._notify()

    def __repr__(self) -> str:
        return (
            f"FeedbackRateController(provider={self.provider!r}, scale={self._scale}, "
            f"level={self._level and self._level.value!r}, pauses={self._pauses})"
        )


def _scale_of(level: BackpressureLevel, soft_scale: float) -> float:
    if level is BackpressureLevel.SOFT:
        return soft_scale
    return level.default_scale


def _restarted(previous: _Heard, event: FeedbackEvent, publisher: str | None) -> bool:
    """A lower ``seq`` from a restarted coordinator: another publisher instance, or (when
    either publisher is unknown) a newer ``ts``."""
    if event.seq >= previous.event.seq:
        return False
    if publisher is not None and previous.publisher is not None:
        return publisher != previous.publisher
    return event.ts > previous.event.ts


def _check_provider(provider: str) -> None:
    try:
        RateAdjustment(provider=provider, scale=1.0, reason="check", ts=datetime.now(UTC))
    except ValidationError:
        msg = f"provider must be a name without spaces (letters, digits, ._:-), got {provider!r}"
        raise ConfigurationError(msg) from None


def _check(*, soft_scale: float, base_rate: float | None, burst_seconds: float) -> None:
    if not 0 < soft_scale <= 1:
        msg = f"soft_scale must be in (0, 1], got {soft_scale}"
        raise ConfigurationError(msg)
    if base_rate is not None and not 0 < base_rate < math.inf:
        msg = f"base_rate must be > 0 records/s (or None: unlimited), got {base_rate}"
        raise ConfigurationError(msg)
    _check_positive(burst_seconds=burst_seconds)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not 0 < value < math.inf:
            msg = f"{name} must be > 0 seconds, got {value}"
            raise ConfigurationError(msg)


# -- links ------------------------------------------------------------------------------

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
            from market_data_pipeline._sse import SseFeedbackReader  # noqa: PLC0415 - httpx
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

"""The job's one rate controller: store backpressure, a supervisor's pause and the job's stop.

:class:`BackpressureController` is core's ``RateController`` for one provider (or one job).
It owns everything that decides when a provider may emit:

- **rate**, from the store's feedback: ``ok`` -> full rate, ``soft`` -> reduced, ``hard``
  -> paused (see below);
- **pause**: :meth:`~BackpressureController.pause` / :meth:`~BackpressureController.resume`,
  a supervisor's manual hold on top of the feedback (it is not counted in ``pauses``);
- **stop**: :meth:`~BackpressureController.stop`, the job is stopping: a waiting
  ``acquire`` returns at once (a paused wait too) and later ones never wait, since a
  stopped provider emits nothing more.

Providers call ``await acquire(n)`` before emitting ``n`` records; the runtime passes the
controller as ``GraphRuntime(graph, rate=controller)`` and stops it with the job.
:meth:`BackpressureController.unlimited` is the controller of a job without feedback: it
ignores feedback and never slows down.

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

The links that feed it from the store live in :mod:`market_data_pipeline.backpressure.links`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog
from pydantic import ValidationError

from market_data_core import (
    BackpressureLevel,
    FeedbackEvent,
    RateAdjustment,
)
from market_data_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from market_data_pipeline.metrics import PipelineMetrics

__all__ = [
    "BackpressureController",
    "RatePublisher",
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


class BackpressureController:
    """A ``RateController`` driven by write-coordinator feedback, with a manual pause and a
    stop; see the module docstring.

    ``provider`` names what is controlled (in ``RateAdjustment``s and metrics).
    ``coordinator_id`` follows one coordinator (``None``: the worst of all). ``soft_scale``
    is the fraction of the full rate under ``soft``. ``base_rate`` is the full rate in
    records/s (``None``: unlimited). ``burst_seconds`` of records may go at once when the
    bucket is full. ``ttl`` is the silence after which the state is unknown.
    ``measure_window`` is the window (seconds) of the throughput EMA used when
    ``base_rate`` is ``None``. ``publisher`` receives every ``RateAdjustment``;
    ``metrics`` gets the ``scale`` gauge and the ``pauses`` counter. ``feedback=False``
    ignores every event (the rate stays full). ``clock`` (monotonic seconds) and ``sleep``
    are injectable for tests.
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
        feedback: bool = True,
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
        self.feedback = feedback
        self._clock = clock
        self._sleep = sleep
        self._heard: dict[str, _Heard] = {}
        self._level: BackpressureLevel | None = None
        self._scale = 1.0
        self._held = False  # a manual pause (pause / resume)
        self._stopped = False  # the job is stopping: acquire never waits again
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

    @classmethod
    def unlimited(cls, provider: str = "job") -> BackpressureController:
        """The controller of a job without feedback: full rate, events ignored."""
        return cls(provider, feedback=False)

    # -- state --------------------------------------------------------------------------

    @property
    def scale(self) -> float:
        """The fraction of the full rate now: 1 (ok), ``soft_scale`` (soft) or 0 (paused
        by hard backpressure or by :meth:`pause`)."""
        return 0.0 if self._held else self._scale

    @property
    def paused(self) -> bool:
        """True while providers wait: hard backpressure or a manual :meth:`pause`."""
        return self.scale == 0

    @property
    def held(self) -> bool:
        """True while a manual :meth:`pause` holds the providers."""
        return self._held

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` (or :meth:`close`) released the providers for good."""
        return self._stopped or self._closed

    @property
    def level(self) -> BackpressureLevel | None:
        """The level the current rate follows (``None`` before any feedback)."""
        return self._level

    @property
    def rate(self) -> float | None:
        """The records/s ``acquire`` grants now at most: 0 while paused, ``None`` when
        unlimited."""
        return 0.0 if self.paused else self._rate

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
        if self._closed or not self.feedback:
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
            if self.metrics is not None:
                self.metrics.pauses.labels(provider=self.provider).inc()
        else:
            if previous == 0 and self._paused_since is not None:
                self._paused_total += now - self._paused_since
                self._paused_since = None
            self._set_rate(self._limit(scale, now), now)
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

    # -- pause and stop -----------------------------------------------------------------

    def pause(self) -> None:
        """Hold the providers at their next ``acquire`` (a supervisor's pause), whatever
        the feedback says; in-flight batches still drain."""
        self._held = True
        self._notify()

    def resume(self) -> None:
        """End a manual pause: the providers go on at the rate the feedback sets."""
        self._held = False
        self._notify()

    def stop(self) -> None:
        """The job is stopping: every waiting ``acquire`` returns now (a paused one too)
        and later ones never wait. Feedback is still followed (``scale``, adjustments)."""
        self._stopped = True
        self._notify()

    async def acquire(self, count: int = 1) -> None:
        """Wait until ``count`` more records may be emitted: while paused (manually, or
        until the store leaves ``hard``); under a finite rate until the token bucket
        allows them. Never waits once stopped or closed."""
        if count <= 0:
            return
        while not self.stopped:
            if self.paused:
                changed = self._changed
                await changed.wait()
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
        self._notify()

    def __repr__(self) -> str:
        return (
            f"BackpressureController(provider={self.provider!r}, scale={self.scale}, "
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

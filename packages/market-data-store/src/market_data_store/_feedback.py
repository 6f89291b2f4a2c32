"""Backpressure feedback of one write coordinator (private).

``FeedbackEmitter`` feeds the queue size to the ``Watermarks`` and publishes a
``FeedbackEvent`` when the level changes (``seq`` + 1), when the coordinator starts or
stops (``seq`` + 1), and as a heartbeat (the latest state with the same ``seq`` and a newer
``ts``, which supersedes it under core's rule). While the coordinator stops, the level is
``hard``: it accepts nothing more, so producers should pause.

Publishing happens in tasks of its own, so a slow transport never delays a write, and
every failure (or a publish that takes longer than ``publish_timeout``) is caught, logged
and counted in ``publish_errors``. Two events published out of order are harmless:
consumers drop the one with the lower ``seq``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from pydantic import ValidationError

from market_data_core import BackpressureLevel, FeedbackEvent, FeedbackPublisher
from market_data_store.exceptions import StoreConfigurationError
from market_data_store.watermarks import Watermarks

__all__ = ["FeedbackEmitter"]

logger = structlog.get_logger(__name__)

_TICK = timedelta(microseconds=1)


class FeedbackEmitter:
    """Turns queue sizes into published ``FeedbackEvent``s; see the module docstring."""

    def __init__(
        self,
        *,
        coordinator_id: str,
        capacity: int,
        watermarks: Watermarks,
        publisher: FeedbackPublisher,
        now: Callable[[], datetime],
        publish_timeout: float,
    ) -> None:
        self._watermarks = watermarks
        self._publisher = publisher
        self._now = now
        self._timeout = publish_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._silenced = False
        self.published = 0
        self.publish_errors = 0
        try:
            self._latest = FeedbackEvent(
                coordinator_id=coordinator_id,
                queue_size=0,
                capacity=capacity,
                level=BackpressureLevel.OK,
                ts=now(),
                seq=0,
                reason="created",
                utilization=0.0,
            )
        except ValidationError as exc:
            fields = ", ".join(str(error["loc"][0]) for error in exc.errors() if error["loc"])
            msg = f"invalid {fields or 'feedback settings'}: {exc.errors(include_url=False)}"
            raise StoreConfigurationError(msg) from exc

    @property
    def latest(self) -> FeedbackEvent:
        """The last event made (published or being published)."""
        return self._latest

    @property
    def level(self) -> BackpressureLevel:
        return self._latest.level

    def observe(self, queue_size: int) -> None:
        """The queue now holds ``queue_size`` records: publish a change of level."""
        utilization = queue_size / self._latest.capacity
        previous = self._watermarks.level
        level = self._watermarks.update(utilization)
        if level is None or self._silenced:
            return
        self._emit(queue_size, level, self._watermarks.reason(utilization, previous), seq=1)

    def started(self, queue_size: int) -> None:
        """The coordinator (re)started: publish its state from a fresh watermark state."""
        self._silenced = False
        self._watermarks.reset()
        self._watermarks.update(queue_size / self._latest.capacity)
        self._emit(queue_size, self._watermarks.level, "coordinator started", seq=1)

    def stopping(self, queue_size: int) -> None:
        """The coordinator stopped accepting writes: publish ``hard`` and nothing more but
        heartbeats until ``started``."""
        self._emit(
            queue_size, BackpressureLevel.HARD, "coordinator stopping: not accepting writes", seq=1
        )
        self._silenced = True

    def heartbeat(self, queue_size: int) -> None:
        """Republish the latest state: same ``seq``, newer ``ts``, current queue size."""
        reason = self._latest.reason
        if not self._silenced:
            reason = self._watermarks.reason(queue_size / self._latest.capacity)
        self._emit(queue_size, self._latest.level, reason, seq=0)

    async def run_heartbeat(self, interval: float, queue_size: Callable[[], int]) -> None:
        """Publish a heartbeat every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.heartbeat(queue_size())

    async def flush(self) -> None:
        """Wait for the publishes under way (each bounded by ``publish_timeout``)."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)

    def _emit(
        self, queue_size: int, level: BackpressureLevel, reason: str | None, *, seq: int
    ) -> None:
        previous = self._latest
        ts = max(self._now(), previous.ts + _TICK)
        self._latest = FeedbackEvent(
            coordinator_id=previous.coordinator_id,
            queue_size=queue_size,
            capacity=previous.capacity,
            level=level,
            ts=ts,
            seq=previous.seq + seq,
            reason=reason,
            utilization=min(queue_size / previous.capacity, 1.0),
        )
        task = asyncio.get_running_loop().create_task(self._publish(self._latest))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: FeedbackEvent) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._publisher.publish(event)
        except Exception:
            self.publish_errors += 1
            logger.warning(
                "publishing feedback failed; writes go on",
                seq=event.seq,
                coordinator=event.coordinator_id,
                exc_info=True,
            )
        else:
            self.published += 1

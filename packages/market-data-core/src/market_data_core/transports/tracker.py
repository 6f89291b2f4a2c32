"""Sequence ordering and staleness for telemetry from many publishers (no I/O).

Both transports feed what they receive through a ``FeedbackTracker`` so that every consumer
sees the same semantics:

- A ``FeedbackEvent`` is accepted when it is newer than the last one accepted for its
  coordinator (higher ``seq``, or the same ``seq`` with a newer ``ts``: a heartbeat).
  Anything else is stale and dropped (counted in ``dropped_stale``).
- A coordinator that restarts starts its sequence again: its events are accepted when they
  come from a different publisher instance, or once the previous state has gone stale.
- A ``RateAdjustment`` is accepted when its ``ts`` is not older than the last one for its
  provider.
- Silence longer than ``ttl`` seconds (measured on the receiver's monotonic clock, so a
  publisher's wrong clock cannot fake freshness) makes a coordinator's level *unknown*.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from market_data_core.exceptions import ConfigurationError
from market_data_core.telemetry import BackpressureLevel, FeedbackEvent, RateAdjustment

__all__ = ["FeedbackTracker"]


_M = TypeVar("_M", FeedbackEvent, RateAdjustment)


@dataclass(slots=True)
class _Seen(Generic[_M]):
    message: _M
    publisher: str | None
    received_at: float

    def superseded_by(self, message: _M, publisher: str | None, now: float, ttl: float) -> bool:
        if now - self.received_at > ttl or publisher != self.publisher:
            return True  # the old state is unknown by now, or a restarted publisher
        return message.supersedes(self.message)


class FeedbackTracker:
    """The latest accepted telemetry per coordinator and per provider."""

    def __init__(self, *, ttl: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl > 0:
            msg = f"ttl must be > 0 seconds, got {ttl}"
            raise ConfigurationError(msg)
        self.ttl = ttl
        self._clock = clock
        self._feedback: dict[str, _Seen[FeedbackEvent]] = {}
        self._rates: dict[str, _Seen[RateAdjustment]] = {}
        self.accepted = 0
        self.dropped_stale = 0

    def observe(
        self, message: FeedbackEvent | RateAdjustment, *, publisher: str | None = None
    ) -> bool:
        """Record ``message``; return False (and count it) when it is stale."""
        if isinstance(message, FeedbackEvent):
            return self._record(self._feedback, message.coordinator_id, message, publisher)
        return self._record(self._rates, message.provider, message, publisher)

    def _record(
        self, table: dict[str, _Seen[_M]], key: str, message: _M, publisher: str | None
    ) -> bool:
        now = self._clock()
        previous = table.get(key)
        if previous is not None and not previous.superseded_by(message, publisher, now, self.ttl):
            self.dropped_stale += 1
            return False
        table[key] = _Seen(message, publisher, now)
        self.accepted += 1
        return True

    def latest(self, coordinator_id: str) -> FeedbackEvent | None:
        """The last accepted event of a coordinator, however old."""
        seen = self._feedback.get(coordinator_id)
        return seen.message if seen is not None else None

    def latest_rate(self, provider: str) -> RateAdjustment | None:
        seen = self._rates.get(provider)
        return seen.message if seen is not None else None

    def is_stale(self, coordinator_id: str) -> bool:
        """True when never heard from, or silent for longer than the TTL."""
        seen = self._feedback.get(coordinator_id)
        return seen is None or self._clock() - seen.received_at > self.ttl

    def level(self, coordinator_id: str) -> BackpressureLevel | None:
        """The current level, or ``None`` when unknown (see ``is_stale``)."""
        if self.is_stale(coordinator_id):
            return None
        return self._feedback[coordinator_id].message.level

    def age(self, coordinator_id: str) -> float | None:
        """Seconds since the coordinator's last accepted event, ``None`` if never."""
        seen = self._feedback.get(coordinator_id)
        return None if seen is None else self._clock() - seen.received_at

    def coordinators(self) -> list[str]:
        return sorted(self._feedback)

    def providers(self) -> list[str]:
        return sorted(self._rates)

    def worst_level(self) -> BackpressureLevel | None:
        """The most severe current level over all coordinators; ``None`` if any is unknown
        or none is known."""
        levels = [self.level(cid) for cid in self._feedback]
        if not levels or any(level is None for level in levels):
            return None
        return BackpressureLevel.worst(levels)

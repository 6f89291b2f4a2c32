"""Per-caller rate limits that keep an audit log bounded: one home for the services.

``RateLimiter`` is a token bucket per caller. ``AuditedRateLimiter`` adds what keeps the
audit log bounded: of a burst of refused calls only the first is audited, the others are
counted and the count goes into the caller's next audit record. The store (``mds``) and
the orchestrator (``mdo``) use one for the refused (401) calls of each client address; the
orchestrator one more for the control calls of each token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from market_data_core.exceptions import ConfigurationError

__all__ = ["Admission", "AuditedRateLimiter", "RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per caller: ``per_minute`` calls a minute, bursts up to ``burst``.

    ``check(caller)`` takes one token and returns ``None``, or returns the seconds until a
    token is available (for ``Retry-After``) and takes nothing. At most ``max_callers``
    buckets are kept; beyond that, full (idle) buckets are forgotten.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = 10_000,
    ) -> None:
        if not per_minute > 0:
            msg = f"per_minute must be > 0, got {per_minute}"
            raise ConfigurationError(msg)
        self.per_minute = per_minute
        self.capacity = float(burst if burst is not None else max(1, math.floor(per_minute)))
        if self.capacity < 1:
            msg = f"burst must be >= 1, got {burst}"
            raise ConfigurationError(msg)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_callers = max_callers
        self._buckets: dict[str, _Bucket] = {}

    def check(self, caller: str) -> float | None:
        """Take a token for ``caller``: ``None`` if allowed, else seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            self._prune(now)
            bucket = self._buckets[caller] = _Bucket(self.capacity, now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self._rate

    def _prune(self, now: float) -> None:
        if len(self._buckets) < self._max_callers:
            return
        for name, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self._rate >= self.capacity:
                del self._buckets[name]
        if len(self._buckets) >= self._max_callers:  # all busy: drop the stalest
            oldest = min(self._buckets, key=lambda name: self._buckets[name].updated)
            del self._buckets[oldest]


@dataclass(frozen=True, slots=True)
class Admission:
    """What ``AuditedRateLimiter.admit`` decided about one call."""

    retry_after: float | None
    """``None``: admitted; else the seconds until the caller may call again."""
    audited: bool
    """Whether the call gets an audit record (False: a refusal that is only counted)."""
    suppressed: int
    """The caller's refusals left out of the audit log since its last record: what this
    call's record reports (``details["suppressed"]``)."""

    @property
    def admitted(self) -> bool:
        return self.retry_after is None


class AuditedRateLimiter:
    """A ``RateLimiter`` that keeps a refused caller's burst out of the audit log.

    The first refusal of a caller is audited; until a call of that caller is admitted
    again, its refusals are only counted, and the count is reported by the caller's next
    audited call. However fast a caller calls, it gets at most ``burst`` audit records and
    then about two a token (one admitted call, one first refusal): a minute adds at most
    ``burst + 2 * per_minute`` records per caller. Counts of at most ``max_callers`` callers
    are kept; ``suppressed_total`` counts every refusal left out.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = 10_000,
    ) -> None:
        self.limiter = RateLimiter(per_minute, burst=burst, clock=clock, max_callers=max_callers)
        self._max_callers = max_callers
        self._refused: dict[str, int] = {}
        """Callers whose last call was refused, and their refusals since the audited one."""
        self.suppressed_total = 0

    def admit(self, caller: str) -> Admission:
        """Take a token for ``caller`` and say whether to answer and audit the call."""
        wait = self.limiter.check(caller)
        if wait is None:
            return Admission(None, audited=True, suppressed=self._refused.pop(caller, 0))
        if caller in self._refused:
            self._refused[caller] += 1
            self.suppressed_total += 1
            return Admission(wait, audited=False, suppressed=0)
        if len(self._refused) >= self._max_callers:
            del self._refused[next(iter(self._refused))]  # the oldest; still in the total
        self._refused[caller] = 0
        return Admission(wait, audited=True, suppressed=0)

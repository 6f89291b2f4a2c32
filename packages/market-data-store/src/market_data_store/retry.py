"""Retrying transient backend failures, and a circuit breaker over failed batches.

``RetryPolicy`` retries a call that raised ``TransientBackendError`` with exponential
backoff and full jitter; every other exception goes straight to the caller.

``CircuitBreaker`` counts failed *batches* (one batch may take several attempts; it counts
once, after its last attempt)::

    closed    --N consecutive failed batches-->  open
    open      --reset_timeout elapsed--------->  half_open   (one trial batch admitted)
    open      --a database check succeeded---->  half_open   (``probe_succeeded``)
    half_open --the trial succeeds------------>  closed
    half_open --the trial fails--------------->  open        (the timeout starts again)

Any success resets the count of consecutive failures and closes the breaker, even when the
batch was admitted before the breaker opened: a write that commits proves the backend works.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from market_data_core import HealthComponent, HealthState
from market_data_store.exceptions import StoreConfigurationError, TransientBackendError

__all__ = ["BreakerState", "CircuitBreaker", "RetryPolicy"]

T = TypeVar("T")

RetryHook = Callable[[int, TransientBackendError, float], None]
"""Called before each retry with the attempt that failed (1-based), its error and the
delay about to be slept."""


def _check(name: str, ok: bool, text: str) -> None:
    if not ok:
        msg = f"{name} {text}"
        raise StoreConfigurationError(msg)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except TypeError:
        return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to ``attempts`` calls in all (1 = no retry). Before retry ``k`` (1-based) it
    sleeps ``min(max_delay, base_delay * 2 ** (k - 1))``, times a uniform draw in
    ``[0, 1)`` when ``jitter`` is on ("full jitter": retries of many workers spread out).

    ``random`` and ``sleep`` are injectable so that tests neither wait nor guess.
    """

    attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 2.0
    jitter: bool = True
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        _check("retry attempts", self.attempts >= 1, f"must be >= 1, got {self.attempts}")
        _check(
            "retry base_delay",
            _finite(self.base_delay) and self.base_delay >= 0,
            f"must be a finite number >= 0, got {self.base_delay}",
        )
        _check(
            "retry max_delay",
            _finite(self.max_delay) and self.max_delay >= self.base_delay,
            f"must be finite and >= base_delay ({self.base_delay}), got {self.max_delay}",
        )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * 2.0 ** min(retry - 1, 64))
        return cap * self.random() if self.jitter else cap

    async def call(
        self, operation: Callable[[], Awaitable[T]], *, on_retry: RetryHook | None = None
    ) -> T:
        """Await ``operation()``; on ``TransientBackendError`` wait and call it again, up to
        ``attempts`` calls. The last transient error is re-raised when they run out; any
        other exception is raised at once."""
        attempt = 1
        while True:
            try:
                return await operation()
            except TransientBackendError as exc:
                if attempt >= self.attempts:
                    raise
                delay = self.delay(attempt)
                if on_retry is not None:
                    on_retry(attempt, exc, delay)
                await self.sleep(delay)
                attempt += 1


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_BREAKER_HEALTH = {
    BreakerState.CLOSED: HealthState.HEALTHY,
    BreakerState.HALF_OPEN: HealthState.DEGRADED,
    BreakerState.OPEN: HealthState.UNHEALTHY,
}


class CircuitBreaker:
    """Stops writes to a failing backend; see the module docstring for the states.

    Callers ask ``try_acquire()`` before a batch and report its outcome with
    ``record_success()`` or ``record_failure()``. In ``half_open`` only one trial batch is
    admitted at a time; a trial that ends without an outcome (cancelled) must call
    ``release()`` so another one can be tried. ``clock`` is monotonic seconds.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at",
        "_state",
        "_trial_in_flight",
        "failure_threshold",
        "opens",
        "reset_timeout",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check(
            "circuit breaker failure_threshold",
            failure_threshold >= 1,
            f"must be >= 1, got {failure_threshold}",
        )
        _check(
            "circuit breaker reset_timeout",
            _finite(reset_timeout) and reset_timeout > 0,
            f"must be a finite number > 0 seconds, got {reset_timeout}",
        )
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self.opens = 0
        """How many times it has opened."""

    @property
    def state(self) -> BreakerState:
        """The current state (``open`` turns ``half_open`` once ``reset_timeout`` passed)."""
        if self._state is BreakerState.OPEN and self.retry_after() == 0:
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = False
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after(self) -> float:
        """Seconds until an open breaker half-opens; 0 when it is not open."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def try_acquire(self) -> bool:
        """May a batch be written now? Always when closed, never when open, and once at a
        time when half-open (the trial)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def probe_succeeded(self) -> None:
        """A check of the database outside the write path succeeded: an open breaker
        half-opens now instead of at the end of ``reset_timeout`` (one trial batch)."""
        if self._state is BreakerState.OPEN:
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = False

    def release(self) -> None:
        """A half-open trial ended without an outcome: admit another trial."""
        self._trial_in_flight = False

    def record_success(self) -> None:
        """A batch was written: reset the failure count and close."""
        self._failures = 0
        self._trial_in_flight = False
        self._state = BreakerState.CLOSED

    def record_failure(self) -> None:
        """A batch failed for good: count it; open at the threshold, or at once when the
        half-open trial failed (an open breaker restarts its timeout)."""
        self._failures += 1
        self._trial_in_flight = False
        state = self.state
        if state is not BreakerState.CLOSED or self._failures >= self.failure_threshold:
            self._open()

    def health(self) -> HealthComponent:
        """``circuit_breaker``: closed healthy, half-open degraded, open unhealthy."""
        state = self.state
        return HealthComponent(
            name="circuit_breaker",
            state=_BREAKER_HEALTH[state],
            details={
                "state": state.value,
                "consecutive_failures": self._failures,
                "failure_threshold": self.failure_threshold,
                "retry_after_s": round(self.retry_after(), 3),
                "opens": self.opens,
            },
        )

    def _open(self) -> None:
        if self._state is not BreakerState.OPEN:
            self.opens += 1
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state.value!r}, failures={self._failures}, "
            f"threshold={self.failure_threshold}, reset_timeout={self.reset_timeout})"
        )

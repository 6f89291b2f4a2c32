"""The lifecycle of a job replica: allowed state moves, restart backoff, crash-loop detection.

::

    pending ──> starting ──> running <──> paused
       ^  ^        │            │           │
       │  │        v            v           v
       │  └──── (crash: back to pending, waiting for the backoff)
       │           stopping ──> stopped
       │        completed (ran to its end)     failed (gave up)
       └──── stopped / completed / failed can be started again

A crashed replica goes back to ``pending`` while it waits for its backoff delay, then to
``starting``. ``Backoff`` doubles the delay at each restart (capped, with jitter) and is
reset after a replica has run stably; ``CrashLoop`` counts the restarts in a sliding window
and says when to give up.
"""

from __future__ import annotations

import random as _random
import time
from collections import deque
from collections.abc import Callable, Iterable

from market_data_core import ConfigurationError
from market_data_orchestrator.exceptions import IllegalTransitionError
from market_data_orchestrator.jobs import JobState

__all__ = [
    "TRANSITIONS",
    "Backoff",
    "CrashLoop",
    "IllegalTransitionError",
    "aggregate",
    "transition",
]

_S = JobState

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.PENDING: frozenset({_S.STARTING, _S.STOPPED, _S.FAILED}),
    _S.STARTING: frozenset(
        {_S.RUNNING, _S.PAUSED, _S.STOPPING, _S.PENDING, _S.FAILED, _S.COMPLETED, _S.STOPPED}
    ),
    _S.RUNNING: frozenset({_S.PAUSED, _S.STOPPING, _S.PENDING, _S.FAILED, _S.COMPLETED}),
    _S.PAUSED: frozenset({_S.RUNNING, _S.STOPPING, _S.PENDING, _S.FAILED, _S.COMPLETED}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.FAILED, _S.COMPLETED}),
    _S.STOPPED: frozenset({_S.STARTING, _S.PENDING}),
    _S.FAILED: frozenset({_S.STARTING, _S.PENDING}),
    _S.COMPLETED: frozenset({_S.STARTING, _S.PENDING}),
}
"""For each state, the states it may move to (staying in the same state is always allowed)."""

TERMINAL = frozenset({_S.STOPPED, _S.FAILED, _S.COMPLETED})
"""States in which no process runs and none will be started unless asked."""


def transition(current: JobState, new: JobState) -> JobState:
    """``new`` if ``current -> new`` is allowed, else ``IllegalTransitionError``."""
    if new is not current and new not in TRANSITIONS[current]:
        raise IllegalTransitionError(current, new, TRANSITIONS[current])
    return new


def aggregate(states: Iterable[JobState]) -> JobState:
    """A job's state from its replicas' states (most urgent first).

    Any replica failed -> failed; stopping -> stopping; starting or pending (restarting) ->
    that; any running -> running (a partly paused job still runs); all paused -> paused;
    all completed -> completed; otherwise stopped. No replica -> pending.
    """
    present = set(states)
    if not present:
        return _S.PENDING
    for state in (_S.FAILED, _S.STOPPING, _S.STARTING, _S.PENDING, _S.RUNNING):
        if state in present:
            return state
    if present == {_S.PAUSED}:
        return _S.PAUSED
    if _S.PAUSED in present:
        return _S.RUNNING
    if present == {_S.COMPLETED}:
        return _S.COMPLETED
    return _S.STOPPED


class Backoff:
    """Exponential restart delays: ``initial * 2**n`` capped at ``maximum``, then +-jitter.

    ``random`` returns a float in [0, 1) (injectable for tests); the jitter is applied after
    the cap, so a delay lies within ``maximum * (1 +- jitter)``.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        jitter: float = 0.1,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ConfigurationError(f"bad backoff: initial {initial}, maximum {maximum}")
        if not 0 <= jitter < 1:
            raise ConfigurationError(f"jitter must be in [0, 1), got {jitter}")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._random = random
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next restart (and count the attempt)."""
        base = min(self.initial * 2.0 ** min(self.attempts, 64), self.maximum)
        self.attempts += 1
        return base * (1 + self.jitter * (2 * self._random() - 1))

    def reset(self) -> None:
        """Start again from ``initial`` (after a replica ran stably)."""
        self.attempts = 0


class CrashLoop:
    """Restarts within a sliding ``window`` (seconds); more than ``limit`` -> give up."""

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 0 or window <= 0:
            raise ConfigurationError(f"bad crash-loop limit {limit} / window {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._restarts: deque[float] = deque()

    @property
    def count(self) -> int:
        """Restarts within the current window."""
        self._prune(self._clock())
        return len(self._restarts)

    def allow(self) -> bool:
        """Record a restart if the limit allows one more within the window; else False."""
        now = self._clock()
        self._prune(now)
        if len(self._restarts) >= self.limit:
            return False
        self._restarts.append(now)
        return True

    @property
    def reason(self) -> str:
        return (
            f"crash loop: {self.limit} restart(s) within {self.window:g} s already;"
            " giving up (start the job again once fixed)"
        )

    def reset(self) -> None:
        self._restarts.clear()

    def _prune(self, now: float) -> None:
        while self._restarts and now - self._restarts[0] >= self.window:
            self._restarts.popleft()

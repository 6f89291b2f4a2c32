"""The lifecycle state machine, the restart backoff and the crash-loop window."""

import itertools

import pytest

from market_data_core import ConfigurationError
from market_data_core.testing import FakeClock
from market_data_orchestrator.jobs import JobState
from market_data_orchestrator.lifecycle import (
    TRANSITIONS,
    Backoff,
    CrashLoop,
    IllegalTransitionError,
    aggregate,
    transition,
)

S = JobState

LEGAL = [
    (S.PENDING, S.STARTING),
    (S.STARTING, S.RUNNING),
    (S.RUNNING, S.PAUSED),
    (S.PAUSED, S.RUNNING),
    (S.RUNNING, S.STOPPING),
    (S.STOPPING, S.STOPPED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.PENDING),  # crashed, waiting for the backoff
    (S.PENDING, S.FAILED),
    (S.FAILED, S.STARTING),
    (S.COMPLETED, S.STARTING),
    (S.STOPPED, S.STARTING),
]
ILLEGAL = [
    (S.STOPPED, S.RUNNING),
    (S.COMPLETED, S.PAUSED),
    (S.FAILED, S.RUNNING),
    (S.PENDING, S.RUNNING),
    (S.STOPPING, S.RUNNING),
    (S.PAUSED, S.STARTING),
    (S.RUNNING, S.STOPPED),  # a stop always passes through stopping
]


@pytest.mark.parametrize(("old", "new"), LEGAL)
def test_legal_transitions(old: JobState, new: JobState) -> None:
    assert transition(old, new) is new


@pytest.mark.parametrize(("old", "new"), ILLEGAL)
def test_illegal_transitions_raise_naming_both_states(old: JobState, new: JobState) -> None:
    with pytest.raises(IllegalTransitionError, match=f"{old} -> {new}"):
        transition(old, new)


def test_every_state_has_an_entry_and_staying_put_is_allowed() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for state in JobState:
        assert transition(state, state) is state
    # every state is reachable from pending
    seen, frontier = {S.PENDING}, [S.PENDING]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(JobState)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], S.PENDING),
        ([S.RUNNING, S.RUNNING], S.RUNNING),
        ([S.RUNNING, S.PAUSED], S.RUNNING),
        ([S.PAUSED, S.PAUSED], S.PAUSED),
        ([S.RUNNING, S.PENDING], S.PENDING),
        ([S.RUNNING, S.FAILED], S.FAILED),
        ([S.COMPLETED, S.COMPLETED], S.COMPLETED),
        ([S.COMPLETED, S.STOPPED], S.STOPPED),
        ([S.STOPPING, S.STOPPED], S.STOPPING),
    ],
)
def test_a_jobs_state_from_its_replicas(states: list[JobState], expected: JobState) -> None:
    assert aggregate(states) is expected


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    randoms = itertools.cycle([0.5, 1.0, 0.0])  # no jitter, +10 %, -10 %
    backoff = Backoff(1.0, 10.0, random=lambda: next(randoms))
    delays = [backoff.next() for _ in range(6)]
    assert delays == pytest.approx([1.0, 2.2, 3.6, 8.0, 11.0, 9.0])
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.next() == pytest.approx(1.0)  # the cycle is back at 0.5


def test_backoff_stays_capped_after_many_attempts() -> None:
    backoff = Backoff(0.5, 60.0, random=lambda: 0.5)
    delays = [backoff.next() for _ in range(200)]
    assert max(delays) == 60.0
    assert delays[-1] == 60.0


def test_backoff_rejects_bad_settings() -> None:
    with pytest.raises(ConfigurationError):
        Backoff(2.0, 1.0)
    with pytest.raises(ConfigurationError):
        Backoff(1.0, 2.0, jitter=1.5)


def test_crash_loop_gives_up_over_the_limit_within_the_window() -> None:
    clock = FakeClock(0.0)
    loop = CrashLoop(3, 60.0, clock=clock)
    for t in (0.0, 10.0, 20.0):
        clock.now = t
        assert loop.allow()
    clock.now = 30.0
    assert not loop.allow()  # a 4th restart within 60 s
    assert loop.count == 3
    assert "3 restart(s) within 60 s" in loop.reason
    clock.now = 60.0  # the restart at 0 left the window
    assert loop.count == 2
    assert loop.allow()
    clock.now = 200.0
    assert loop.count == 0


def test_crash_loop_limit_zero_never_restarts_and_reset_clears() -> None:
    assert not CrashLoop(0, 10.0).allow()
    loop = CrashLoop(1, 10.0, clock=FakeClock(0.0))
    assert loop.allow()
    assert not loop.allow()
    loop.reset()
    assert loop.allow()

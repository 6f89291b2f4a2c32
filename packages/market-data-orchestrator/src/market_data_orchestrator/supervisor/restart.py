"""The restart policy: what a child's exit means for its replica, and when it runs again.

- exit 0 after ``stop``: stopped; exit 0 with a ``completed`` summary: completed (restarted
  only under ``always``); exit 2 (invalid config): failed at once, a restart cannot help;
- any other exit (or a signal): a crash, restarted under ``on-failure`` and ``always``
  with the replica's ``Backoff`` until its ``CrashLoop`` gives up: failed, with the reason
  in ``last_error``. A replica that ran ``stable_after`` seconds restarts with the initial
  backoff again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from market_data_orchestrator.deployment import RestartPolicyName
from market_data_orchestrator.jobs import JobState
from market_data_orchestrator.supervisor.process import signal_name
from market_data_orchestrator.supervisor.records import ReplicaRecord

__all__ = ["ERROR_CHARS", "Verdict", "after_exit", "exit_error"]

_S = JobState
INVALID_CONFIG = 2
"""The exit code of ``mdp run`` for a config it refuses."""
ERROR_CHARS = 500
"""The longest ``last_error`` kept."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The replica's next state and why; ``delay`` seconds before its restart, or None
    when it is not restarted."""

    state: JobState
    reason: str
    delay: float | None = None


def after_exit(
    replica: ReplicaRecord, code: int | None, *, clock: Callable[[], float], stable_after: float
) -> Verdict:
    """Record how the child ended (exit code, error) and decide what happens next."""
    replica.last_exit_code = code
    policy = replica.job.spec.restart.policy
    if replica.stop_requested:
        return Verdict(_S.STOPPED, f"stopped (exit code {code})")
    if code == 0:
        return _clean_exit(replica, clock=clock, stable_after=stable_after)
    error = exit_error(replica, code)
    replica.last_error = replica.job.last_error = error
    if code == INVALID_CONFIG:
        return Verdict(_S.FAILED, f"invalid config, not restarted: {error}")
    if policy is RestartPolicyName.NEVER:
        return Verdict(_S.FAILED, error)
    return _restart(replica, error, clock=clock, stable_after=stable_after)


def _clean_exit(
    replica: ReplicaRecord, *, clock: Callable[[], float], stable_after: float
) -> Verdict:
    """Exit 0: completed or stopped, restarted only under ``always``."""
    if replica.job.spec.restart.policy is not RestartPolicyName.ALWAYS:
        if replica.summary_state == "completed":
            return Verdict(_S.COMPLETED, "ran to completion")
        return Verdict(_S.STOPPED, "exited 0")
    return _restart(replica, "exited 0", clock=clock, stable_after=stable_after)


def _restart(
    replica: ReplicaRecord, why: str, *, clock: Callable[[], float], stable_after: float
) -> Verdict:
    """Pending for the next backoff delay, or failed when the crash loop gives up."""
    started = replica.started_mono
    if started is not None and clock() - started >= stable_after:
        replica.backoff.reset()
    if not replica.crash_loop.allow():
        reason = f"{replica.crash_loop.reason}; last exit: {why}"[:ERROR_CHARS]
        replica.last_error = replica.job.last_error = reason
        return Verdict(_S.FAILED, reason)
    delay = replica.backoff.next()
    return Verdict(_S.PENDING, f"{why}; restarting in {delay:.2f} s", delay)


def exit_error(replica: ReplicaRecord, code: int | None) -> str:
    """How the child ended, with the CLI's last error from its stderr (secrets redacted)."""
    if code is None:
        how = "could not be started"
    elif code < 0:
        how = f"killed by {signal_name(-code)}"
    else:
        how = f"exited with code {code}"
    lines = [line.strip() for line in replica.stderr if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    message = None
    if starts:  # the CLI's last error, which a narrow console may have wrapped
        message = " ".join(lines[starts[-1] :])
    elif code is not None and code > 0 and lines:
        message = lines[-1]
    text = f"{how}: {message}" if message else how
    return replica.job.redact(text)[:ERROR_CHARS]

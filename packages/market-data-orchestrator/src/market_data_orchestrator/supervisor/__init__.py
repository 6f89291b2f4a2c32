"""Runs a deployment's jobs as supervised child processes of ``mdp run CONFIG --control``.

Each replica of a job is one child, started in its own process group and told (on Linux)
to get SIGTERM if the orchestrator dies, so no child outlives it. A task per replica
spawns the child, reads its JSON-line events (``started``, ``progress``, ``control``,
``summary``), maps them to ``JobState``, and restarts the child per the job's restart
policy with ``Backoff`` and ``CrashLoop``:

- exit 0 after ``stop``: stopped; exit 0 with a ``completed`` summary: completed (restarted
  only under ``always``); exit 2 (invalid config): failed at once, a restart cannot help;
  any other exit (or a signal): a crash, restarted under ``on-failure`` and ``always``
  until the crash-loop limit, then failed with the reason in ``last_error``.
- ``control`` sends pause / resume / reload to every running replica over its stdin and
  waits for each acknowledgement; a pause is held (``paused_by``) so that a replica that
  restarts while the job is paused starts paused.
- ``stop`` and ``aclose`` send SIGTERM (the child drains, for at most its
  ``MDP_DRAIN_TIMEOUT``, and exits 0), wait up to the job's ``stop_timeout``, then SIGKILL
  the replica's process group. A child whose summary says its drain timed out is logged
  with what it could not flush.

State changes are published as ``StateChange`` events (per replica, and per job with
``replica=None``) to callbacks (``add_listener``) and async iterators (``events()``).

One module per job: ``supervisor`` (the ``Supervisor`` and its state machine), ``process``
(starting, signalling and stopping children), ``streams`` (what a child writes),
``control`` (commands on its stdin and their acknowledgements), ``restart`` (the restart
policy), ``schedule`` (cron), ``scaling`` (replica counts), ``changes`` (state-change
events) and ``records`` (what is kept per job and replica).
"""

from market_data_orchestrator.exceptions import SupervisorClosedError
from market_data_orchestrator.supervisor.records import Progress, StateChange
from market_data_orchestrator.supervisor.supervisor import Supervisor

__all__ = ["Progress", "StateChange", "Supervisor", "SupervisorClosedError"]

"""The children: ``mdp run CONFIG --control`` processes that cannot outlive the orchestrator
(own process group, parent-death signal), how they are started, signalled and stopped."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from market_data_orchestrator.deployment import JobSpec

__all__ = [
    "child_argv",
    "child_env",
    "kill_group",
    "signal_name",
    "signal_process",
    "spawn",
    "terminate",
]

_PR_SET_PDEATHSIG = 1
_STREAM_LIMIT = 4 * 1024 * 1024  # progress lines carry every node's counters
_RESIGNAL_EVERY = 1.0


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the forked child, before exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: do it ourselves
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


async def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None
) -> asyncio.subprocess.Process:
    """Start ``argv`` with pipes on stdin/stdout/stderr, in its own process group."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        limit=_STREAM_LIMIT,
        process_group=0,
        preexec_fn=_die_with_parent(),
    )


def signal_process(process: asyncio.subprocess.Process, sig: signal.Signals) -> bool:
    """Send ``sig`` to the process if it still runs; whether it was sent."""
    if process.returncode is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
        return True
    return False


def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the child's whole process group (the child and anything it started).

    Only while the child has not been reaped: its pid is then still its group's id.
    """
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9: how an exit by signal is reported."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def child_argv(python: str, spec: JobSpec, replica: int) -> list[str]:
    """The command line of one replica of a job (its partitions, if the job has them)."""
    config = spec.config if spec.config.is_absolute() else Path.cwd() / spec.config
    argv = [python, "-m", "market_data_pipeline.cli", "run", str(config), "--control"]
    partitions = spec.partitions_of(replica)
    if partitions is not None:
        argv += ["--partitions", ",".join(map(str, partitions))]
    return argv


def child_env(spec: JobSpec) -> dict[str, str]:
    """The orchestrator's environment plus the job's own variables."""
    return {**os.environ, **spec.environment()}


async def terminate(
    process: asyncio.subprocess.Process, task: asyncio.Task[None], within: float
) -> bool:
    """SIGTERM the child until it exits or ``within`` seconds pass; whether it exited
    (``task`` supervises it and ends when it does).

    The signal is repeated every second: a child that was reloading when the first one
    came may have started its next run instead of stopping.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while signal_process(process, signal.SIGTERM):
        left = deadline - loop.time()
        if left <= 0:
            return task.done()
        done, _ = await asyncio.wait({task}, timeout=min(_RESIGNAL_EVERY, left))
        if done:
            return True
    await asyncio.wait({task}, timeout=max(deadline - loop.time(), 0.1))
    return task.done()

"""Child processes that cannot outlive the orchestrator: own process group, parent-death signal."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["kill_group", "signal_process", "spawn"]

_PR_SET_PDEATHSIG = 1
_STREAM_LIMIT = 4 * 1024 * 1024  # progress lines carry every node's counters


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

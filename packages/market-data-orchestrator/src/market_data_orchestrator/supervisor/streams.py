"""What a child writes: JSON-line events on stdout (``started``, ``progress``, ``control``,
``summary``, ``error``) and its last stderr lines (for the error of a failed exit)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from pydantic import ValidationError

from market_data_core.job_protocol import (
    JobControlAck,
    JobError,
    JobEvent,
    JobProgress,
    JobStarted,
    RunSummary,
)
from market_data_orchestrator.supervisor.records import Progress, ReplicaRecord

__all__ = ["AnyJobEvent", "read_events", "read_stderr", "record_progress"]

AnyJobEvent = JobStarted | JobProgress | JobControlAck | JobError | RunSummary

logger = structlog.get_logger("market_data_orchestrator.supervisor")


async def read_stderr(replica: ReplicaRecord, process: asyncio.subprocess.Process) -> None:
    """Keep the child's last stderr lines on the replica until the stream ends."""
    assert process.stderr is not None
    while True:
        try:
            line = await process.stderr.readline()
        except ValueError:  # a line over the stream limit: skipped
            continue
        if not line:
            return
        replica.stderr.append(line.decode(errors="replace").rstrip())


async def read_events(
    replica: ReplicaRecord,
    process: asyncio.subprocess.Process,
    on_event: Callable[[ReplicaRecord, AnyJobEvent], None],
) -> None:
    """Call ``on_event`` with each event of the child's stdout until it ends (other lines
    are skipped: something else printed there)."""
    assert process.stdout is not None
    while True:
        try:
            line = await process.stdout.readline()
        except ValueError:
            continue
        if not line:
            return
        try:
            event = JobEvent.model_validate_json(line).root
        except ValidationError:
            if line.lstrip().startswith(b"{"):
                logger.warning(
                    "unreadable event from a job",
                    job=replica.job.spec.name,
                    line=line[:200].decode(errors="replace"),
                )
            continue  # not an event: something else printed on stdout
        on_event(replica, event)


def record_progress(replica: ReplicaRecord, event: JobProgress, now: float) -> None:
    """Keep a progress report on the replica, with the providers' items per second over
    the last reports."""
    nodes = {n: {"in": p.rows_in, "out": p.rows_out} for n, p in event.nodes.items()}
    emitted = sum(n["out"] for n in nodes.values() if not n["in"])
    if replica.samples and emitted < replica.samples[-1][1]:
        replica.samples.clear()  # a reload restarted the counters
    replica.samples.append((now, emitted))
    (t0, n0), (t1, n1) = replica.samples[0], replica.samples[-1]
    replica.items_per_second = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
    seq = replica.progress.seq + 1 if replica.progress is not None else 1
    replica.progress = Progress(seq=seq, state=event.state, nodes=nodes, emitted=emitted)

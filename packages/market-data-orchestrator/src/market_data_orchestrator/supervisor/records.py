"""The supervisor's records of jobs and replicas, its state-change events, and the
control results it answers."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from market_data_core import ControlAction, ControlResult, ControlStatus
from market_data_orchestrator.deployment import JobSpec
from market_data_orchestrator.jobs import JobState, ReplicaInfo
from market_data_orchestrator.lifecycle import Backoff, CrashLoop

_S = JobState
LIVE = frozenset({_S.STARTING, _S.RUNNING, _S.PAUSED})


class StateChange(BaseModel):
    """A job (``replica`` None) or one of its replicas changed state."""

    model_config = ConfigDict(frozen=True)

    name: str
    replica: int | None
    old: JobState
    new: JobState
    reason: str = ""
    ts: datetime


class Progress(BaseModel):
    """A replica's latest ``progress`` report (``seq`` counts the reports of its child)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    state: str
    nodes: dict[str, dict[str, int]]
    emitted: int
    """What the providers (nodes that take no input) emitted so far."""


class ReplicaRecord:
    def __init__(self, job: JobRecord, index: int, backoff: Backoff, crash_loop: CrashLoop) -> None:
        self.job = job
        self.index = index
        self.state = _S.PENDING
        self.pid: int | None = None
        self.restarts = 0
        self.started_at: datetime | None = None
        self.started_mono: float | None = None
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        self.items_per_second = 0.0
        self.backoff = backoff
        self.crash_loop = crash_loop
        self.process: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop_requested = False
        self.summary_state: str | None = None
        self.acks: dict[str, tuple[ControlAction, asyncio.Future[ControlResult]]] = {}
        self.stderr: deque[str] = deque(maxlen=50)
        self.samples: deque[tuple[float, int]] = deque(maxlen=6)
        self.progress: Progress | None = None

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def live(self) -> bool:
        process = self.process
        return process is not None and process.returncode is None and self.state in LIVE

    def info(self) -> ReplicaInfo:
        return ReplicaInfo(
            index=self.index,
            state=self.state,
            pid=self.pid,
            restarts=self.restarts,
            started_at=self.started_at,
            last_exit_code=self.last_exit_code,
            last_error=self.last_error,
            items_per_second=round(self.items_per_second, 3),
            partitions=self.job.spec.partitions_of(self.index),
        )


class JobRecord:
    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.replicas: list[ReplicaRecord] = []
        self.state = _S.PENDING
        self.paused_by: str | None = None
        self.last_error: str | None = None
        self.next_run: datetime | None = None
        self.secrets = [v for v in spec.environment().values() if len(v) >= 4]
        self.scaling = asyncio.Lock()
        """Held while the replica set changes (one scale at a time)."""

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def control_result(
    action: ControlAction, target: str, status: ControlStatus, message: str
) -> ControlResult:
    return ControlResult(
        action=action, target=target, status=status, message=message, ts=datetime.now(UTC)
    )


def combined_status(answers: list[ControlResult]) -> ControlStatus:
    statuses = {a.status for a in answers}
    if statuses == {ControlStatus.ACCEPTED}:
        return ControlStatus.ACCEPTED
    if ControlStatus.FAILED in statuses:
        return ControlStatus.FAILED
    return ControlStatus.REJECTED

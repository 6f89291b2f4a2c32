"""What the orchestrator knows about a job, and the interface its API drives.

``JobState`` is a job's lifecycle; ``JobInfo`` is what the API and ``mdo`` show; the
``JobController`` protocol is what the supervisor offers the API (so the API is tested
against it and the supervisor implements it).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from market_data_core import ControlAction, ControlResult

__all__ = ["JobController", "JobInfo", "JobState", "ReplicaInfo", "ScaleRequest"]


class JobState(StrEnum):
    """A job's lifecycle (see ``lifecycle.TRANSITIONS`` for the allowed moves)."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    COMPLETED = "completed"


class ReplicaInfo(BaseModel):
    """One child process of a job."""

    model_config = ConfigDict(frozen=True)

    index: int
    state: JobState
    pid: int | None = None
    restarts: int = 0
    started_at: datetime | None = None
    last_exit_code: int | None = None
    last_error: str | None = None
    items_per_second: float = 0.0
    """Records the job's providers emitted per second, over the last progress reports."""
    partitions: list[int] | None = None
    """The partitions this replica owns (None: the job is not partitioned)."""


class JobInfo(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    config: str
    state: JobState
    replicas: list[ReplicaInfo] = Field(default_factory=list)
    desired_replicas: int = 1
    partitions: int | None = None
    restarts: int = 0
    last_error: str | None = None
    writes_to_store: bool = True
    paused_by: str | None = Field(
        default=None, description="Who holds the pause: an operator, or 'store-health'."
    )
    schedule: str | None = None
    next_run: datetime | None = None


class ScaleRequest(BaseModel):
    """The body of ``POST /v1/jobs/{name}/scale``."""

    model_config = ConfigDict(extra="forbid")

    replicas: int = Field(
        strict=True,  # "2", 2.0 and true are not counts
        ge=1,
        le=1024,
        description="Children to keep (a partitioned job: at most its partitions; rebalanced).",
    )


class JobController(Protocol):
    """What the supervisor offers the API and the health loop."""

    def jobs(self) -> list[JobInfo]: ...

    def job(self, name: str) -> JobInfo:
        """Raises ``KeyError`` for an unknown job."""
        ...

    async def start(self, name: str) -> JobInfo: ...

    async def stop(self, name: str) -> JobInfo: ...

    async def control(self, name: str, action: ControlAction, *, by: str) -> ControlResult:
        """Pause / resume / reload every replica; ``by`` is who asked (for ``paused_by``)."""
        ...

    async def scale(self, name: str, replicas: int, *, by: str) -> JobInfo:
        """Change the job's replica count while it runs (``ValueError``: not possible)."""
        ...

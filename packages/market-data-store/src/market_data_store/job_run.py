"""A job run as the store keeps it (``job_runs``): the record both the backends and the
tracker (``market_data_store.jobs``) use."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from market_data_core import UtcDatetime

__all__ = ["JobMode", "JobRun", "JobStatus"]

JobMode = Literal["live", "backfill"]
JobStatus = Literal["running", "succeeded", "failed", "cancelled"]


class JobRun(BaseModel):
    """One run of a job, as kept in ``job_runs``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    job_name: Annotated[str, Field(min_length=1, max_length=200)]
    provider: Annotated[str, Field(min_length=1, max_length=200)]
    mode: JobMode
    status: JobStatus = "running"
    rows_written: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    rows_failed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    symbols: tuple[str, ...] = ()
    min_ts: UtcDatetime | None = None
    max_ts: UtcDatetime | None = None
    error: str | None = None
    started_at: UtcDatetime
    heartbeat_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    config_fingerprint: str | None = None

    @property
    def duration(self) -> timedelta:
        return (self.finished_at or self.heartbeat_at) - self.started_at

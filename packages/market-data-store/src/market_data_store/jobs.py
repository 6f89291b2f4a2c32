"""Job runs: what each pipeline run (live or backfill) did, and which runs are stuck.

``JobRunTracker`` records a run's start, heartbeats with progress, and completion in the
store's ``job_runs`` table; a run whose heartbeat is older than a threshold while still
``running`` is *stuck* (its process probably died).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from market_data_store.backends.base import Backend
from market_data_store.exceptions import StoreConfigurationError
from market_data_store.job_run import JobMode, JobRun, JobStatus

__all__ = ["JobMode", "JobRun", "JobRunTracker", "JobStatus", "config_fingerprint"]


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """A stable SHA-256 of a job's configuration (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


def _widen(
    low: datetime | None, high: datetime | None, new_low: datetime | None, new_high: datetime | None
) -> tuple[datetime | None, datetime | None]:
    lows = [t for t in (low, new_low) if t is not None]
    highs = [t for t in (high, new_high) if t is not None]
    return (min(lows) if lows else None, max(highs) if highs else None)


class JobRunTracker:
    """Start, heartbeat and complete job runs in a backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def start(
        self,
        job_name: str,
        *,
        provider: str,
        mode: JobMode = "live",
        symbols: Sequence[str] = (),
        config: Mapping[str, Any] | None = None,
    ) -> JobRun:
        now = _now()
        run = JobRun(
            id=str(uuid.uuid4()), job_name=job_name, provider=provider, mode=mode,
            symbols=tuple(symbols), started_at=now, heartbeat_at=now,
            config_fingerprint=config_fingerprint(config) if config is not None else None,
        )  # fmt: skip
        await self.backend.save_job_run(run)
        return run

    async def heartbeat(
        self,
        run_id: str,
        *,
        rows_written: int = 0,
        rows_failed: int = 0,
        min_ts: datetime | None = None,
        max_ts: datetime | None = None,
    ) -> JobRun:
        """Add progress (counts are increments) and refresh the heartbeat."""
        run = await self._running(run_id)
        low, high = _widen(run.min_ts, run.max_ts, min_ts, max_ts)
        updated = run.model_copy(
            update={
                "rows_written": run.rows_written + rows_written,
                "rows_failed": run.rows_failed + rows_failed,
                "min_ts": low, "max_ts": high, "heartbeat_at": _now(),
            }
        )  # fmt: skip
        await self.backend.save_job_run(updated)
        return updated

    async def complete(
        self, run_id: str, *, status: JobStatus = "succeeded", error: str | None = None
    ) -> JobRun:
        if status == "running":
            msg = "complete() needs a final status: succeeded, failed or cancelled"
            raise StoreConfigurationError(msg)
        run = await self._running(run_id)
        now = _now()
        done = run.model_copy(
            update={"status": status, "error": error, "heartbeat_at": now, "finished_at": now}
        )
        await self.backend.save_job_run(done)
        return done

    async def stuck(self, older_than: timedelta) -> list[JobRun]:
        """Running jobs whose last heartbeat is older than ``older_than``."""
        return await self.backend.stuck_job_runs(_now() - older_than)

    async def _running(self, run_id: str) -> JobRun:
        run = await self.backend.get_job_run(run_id)
        if run is None:
            msg = f"no job run {run_id!r}"
            raise StoreConfigurationError(msg)
        if run.status != "running":
            msg = f"job run {run_id} is already {run.status}"
            raise StoreConfigurationError(msg)
        return run

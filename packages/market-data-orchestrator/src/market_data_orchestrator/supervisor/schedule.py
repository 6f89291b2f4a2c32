"""Scheduled jobs: a job with a cron ``schedule`` starts at each fire time (UTC), unless
its previous run is still going."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from croniter import croniter

from market_data_orchestrator.jobs import JobInfo
from market_data_orchestrator.supervisor.records import JobRecord

__all__ = ["run_schedule"]

logger = structlog.get_logger("market_data_orchestrator.supervisor")


async def run_schedule(
    job: JobRecord,
    start: Callable[[str], Awaitable[JobInfo]],
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    """Start the job at each fire time of its schedule, forever (cancel to end)."""
    expression = job.spec.schedule
    assert expression is not None
    last: datetime | None = None
    while True:
        now = datetime.now(UTC)
        base = max(now, last) if last is not None else now
        fire: datetime = croniter(expression, base).get_next(datetime)
        job.next_run = fire
        delay = (fire - datetime.now(UTC)).total_seconds()
        if delay > 0:
            await sleep(delay)
        last = fire
        if any(r.active for r in job.replicas):
            logger.info("scheduled run skipped: still running", job=job.spec.name)
            continue
        logger.info("scheduled run", job=job.spec.name, fire=fire.isoformat())
        await start(job.spec.name)

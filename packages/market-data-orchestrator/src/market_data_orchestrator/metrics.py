"""Prometheus metrics of the orchestrator, shaped for a KEDA ``ScaledObject``.

All metrics live in an injected ``CollectorRegistry``. Labels are bounded: ``state`` takes
the eight ``JobState`` values and ``job`` the jobs of the deployment file (a job that
leaves the deployment has its series removed).

=====================================  ======= ===============================================
name                                   type    meaning
=====================================  ======= ===============================================
orchestrator_jobs_running              gauge   jobs in state ``running``
orchestrator_jobs{state}               gauge   jobs per lifecycle state
orchestrator_job_restarts_total{job}   counter restarts of a job's processes
orchestrator_backpressure_level        gauge   worst latest level over coordinators: 0 ok,
                                               1 soft, 2 hard (last known; held while silent)
orchestrator_store_healthy             gauge   1 when the store's verdict is healthy, else 0
orchestrator_desired_replicas{job}     gauge   replicas a job should run
orchestrator_backlog                   gauge   records queued in the store's write
                                               coordinators (latest ``FeedbackEvent``)
=====================================  ======= ===============================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from market_data_core import BackpressureLevel, FeedbackEvent, HealthState
from market_data_orchestrator.jobs import JobInfo, JobState

__all__ = ["FeedbackView", "OrchestratorMetrics", "StoreView"]


class StoreView(Protocol):
    """What the metrics read from a ``StoreHealthWatcher``."""

    @property
    def verdict(self) -> HealthState | None: ...


class FeedbackView(Protocol):
    """What the metrics read from a ``FeedbackWatcher``."""

    def events(self) -> list[FeedbackEvent]: ...


class OrchestratorMetrics:
    """The orchestrator's gauges and counters; call ``update`` before each scrape."""

    def __init__(self, registry: CollectorRegistry, *, store_source: str = "store") -> None:
        self.registry = registry
        self.store_source = store_source
        self.jobs_running = Gauge(
            "orchestrator_jobs_running", "Jobs in state running.", registry=registry
        )
        self.jobs = Gauge(
            "orchestrator_jobs", "Jobs per lifecycle state.", ["state"], registry=registry
        )
        self.job_restarts = Counter(
            "orchestrator_job_restarts",
            "Restarts of a job's processes.",
            ["job"],
            registry=registry,
        )
        self.backpressure_level = Gauge(
            "orchestrator_backpressure_level",
            "Worst latest backpressure level over coordinators: 0 ok, 1 soft, 2 hard.",
            registry=registry,
        )
        self.store_healthy = Gauge(
            "orchestrator_store_healthy",
            "1 when the orchestrator's verdict on the store is healthy, else 0.",
            registry=registry,
        )
        self.desired_replicas = Gauge(
            "orchestrator_desired_replicas",
            "Replicas a job should run.",
            ["job"],
            registry=registry,
        )
        self.backlog = Gauge(
            "orchestrator_backlog",
            "Records queued in the store's write coordinators (latest feedback).",
            registry=registry,
        )
        self._restarts_seen: dict[str, int] = {}
        for state in JobState:
            self.jobs.labels(state.value).set(0)

    def update(
        self,
        jobs: Sequence[JobInfo],
        store_watcher: StoreView | None = None,
        feedback_watcher: FeedbackView | None = None,
    ) -> None:
        """Set every metric from the current jobs, store verdict and feedback."""
        self._update_jobs(jobs)
        if store_watcher is not None:
            healthy = store_watcher.verdict is HealthState.HEALTHY
            self.store_healthy.set(1 if healthy else 0)
        if feedback_watcher is not None:
            self._update_feedback(feedback_watcher.events())

    def _update_jobs(self, jobs: Sequence[JobInfo]) -> None:
        counts = dict.fromkeys(JobState, 0)
        for job in jobs:
            counts[job.state] += 1
        for state, count in counts.items():
            self.jobs.labels(state.value).set(count)
        self.jobs_running.set(counts[JobState.RUNNING])
        names = {job.name for job in jobs}
        for gone in set(self._restarts_seen) - names:
            del self._restarts_seen[gone]
            self.job_restarts.remove(gone)
            self.desired_replicas.remove(gone)
        for job in jobs:
            self.desired_replicas.labels(job.name).set(job.desired_replicas)
            seen = self._restarts_seen.get(job.name, 0)
            # a count that went down was reset (a reloaded job): count it again from zero
            delta = job.restarts - seen if job.restarts >= seen else job.restarts
            self.job_restarts.labels(job.name).inc(delta)
            self._restarts_seen[job.name] = job.restarts

    def _update_feedback(self, events: Iterable[FeedbackEvent]) -> None:
        latest = list(events)
        worst = BackpressureLevel.worst(event.level for event in latest)
        self.backpressure_level.set(worst.severity)
        backlog = sum(e.queue_size for e in latest if e.source == self.store_source)
        self.backlog.set(backlog)

"""The orchestrator's Prometheus metrics after ``update``."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest

from market_data_core import BackpressureLevel, FeedbackEvent, HealthState
from market_data_core.testing import make_feedback_event
from market_data_orchestrator.jobs import JobInfo, JobState
from market_data_orchestrator.metrics import OrchestratorMetrics


@dataclass
class FakeStore:
    verdict: HealthState | None = HealthState.HEALTHY


@dataclass
class FakeFeedback:
    latest: list[FeedbackEvent] = field(default_factory=list)

    def events(self) -> list[FeedbackEvent]:
        return self.latest


def job(name: str, state: JobState, *, restarts: int = 0, desired: int = 1) -> JobInfo:
    return JobInfo(
        name=name,
        config=f"{name}.yaml",
        state=state,
        restarts=restarts,
        desired_replicas=desired,
    )


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_job_metrics() -> None:
    registry = CollectorRegistry()
    metrics = OrchestratorMetrics(registry)
    assert value(registry, "orchestrator_jobs", state="running") == 0
    jobs = [
        job("bars", JobState.RUNNING, restarts=2, desired=3),
        job("quotes", JobState.RUNNING),
        job("backfill", JobState.PAUSED, restarts=1),
        job("replay", JobState.FAILED, restarts=5),
    ]
    metrics.update(jobs)
    assert value(registry, "orchestrator_jobs_running") == 2
    assert value(registry, "orchestrator_jobs", state="running") == 2
    assert value(registry, "orchestrator_jobs", state="paused") == 1
    assert value(registry, "orchestrator_jobs", state="failed") == 1
    assert value(registry, "orchestrator_jobs", state="stopped") == 0
    assert value(registry, "orchestrator_job_restarts_total", job="bars") == 2
    assert value(registry, "orchestrator_job_restarts_total", job="replay") == 5
    assert value(registry, "orchestrator_desired_replicas", job="bars") == 3
    assert value(registry, "orchestrator_desired_replicas", job="quotes") == 1

    # the counter follows the restarts (and counts again after a reset), and a job that
    # left the deployment loses its series
    metrics.update(
        [job("bars", JobState.RUNNING, restarts=4, desired=2), job("replay", JobState.FAILED)]
    )
    assert value(registry, "orchestrator_job_restarts_total", job="bars") == 4
    assert value(registry, "orchestrator_job_restarts_total", job="replay") == 5
    metrics.update(
        [job("bars", JobState.RUNNING, restarts=4), job("replay", JobState.FAILED, restarts=1)]
    )
    assert value(registry, "orchestrator_job_restarts_total", job="bars") == 4
    assert value(registry, "orchestrator_job_restarts_total", job="replay") == 6
    assert value(registry, "orchestrator_desired_replicas", job="bars") == 1
    assert value(registry, "orchestrator_desired_replicas", job="quotes") is None
    assert value(registry, "orchestrator_job_restarts_total", job="quotes") is None
    assert value(registry, "orchestrator_jobs_running") == 1
    assert value(registry, "orchestrator_jobs", state="paused") == 0


def test_store_and_feedback_metrics() -> None:
    registry = CollectorRegistry()
    metrics = OrchestratorMetrics(registry)
    store = FakeStore()
    feedback = FakeFeedback(
        [
            make_feedback_event(coordinator_id="store-1", queue_size=700, level="soft"),
            make_feedback_event(coordinator_id="store-2", queue_size=50),
            make_feedback_event(
                coordinator_id="pipe", source="pipeline", queue_size=999, level="ok"
            ),
        ]
    )
    metrics.update([], store, feedback)
    assert value(registry, "orchestrator_store_healthy") == 1
    assert value(registry, "orchestrator_backpressure_level") == 1
    assert value(registry, "orchestrator_backlog") == 750  # store coordinators only

    store.verdict = HealthState.UNHEALTHY
    feedback.latest[1] = make_feedback_event(
        coordinator_id="store-2", queue_size=1000, level=BackpressureLevel.HARD, seq=2
    )
    metrics.update([], store, feedback)
    assert value(registry, "orchestrator_store_healthy") == 0
    assert value(registry, "orchestrator_backpressure_level") == 2
    assert value(registry, "orchestrator_backlog") == 1700

    store.verdict = None  # not decided yet: not known healthy
    metrics.update([], store, FakeFeedback())
    assert value(registry, "orchestrator_store_healthy") == 0
    assert value(registry, "orchestrator_backpressure_level") == 0
    assert value(registry, "orchestrator_backlog") == 0


def test_exposition_names() -> None:
    registry = CollectorRegistry()
    OrchestratorMetrics(registry).update([job("a", JobState.RUNNING)], FakeStore(), FakeFeedback())
    text = generate_latest(registry).decode()
    for name in (
        "orchestrator_jobs_running ",
        'orchestrator_jobs{state="running"}',
        'orchestrator_job_restarts_total{job="a"}',
        "orchestrator_backpressure_level ",
        "orchestrator_store_healthy ",
        'orchestrator_desired_replicas{job="a"}',
        "orchestrator_backlog ",
        "# TYPE orchestrator_job_restarts_total counter",
    ):
        assert name in text, name

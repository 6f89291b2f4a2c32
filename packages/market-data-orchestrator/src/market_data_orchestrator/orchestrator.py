"""The orchestrator: the supervisor, the store's health, feedback, topology and audit, together.

``Orchestrator(deployment)`` owns one ``Supervisor`` of the deployment's jobs and the
watchers around it. When the store's verdict turns unhealthy (after the configured number
of consecutive bad results) it pauses every job that writes to the store, recording
``paused_by = "store-health"``; when the store is healthy again it resumes exactly those
jobs. Operators' own pauses are left alone. Every pause and resume it makes is audited
with the actor ``store-health``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

import structlog
from prometheus_client import CollectorRegistry

from market_data_core import (
    AuditOutcome,
    ControlAction,
    HealthComponent,
    HealthState,
    HealthStatus,
    NodeRole,
    NodeStatus,
)
from market_data_orchestrator.audit import AuditLog
from market_data_orchestrator.deployment import Deployment
from market_data_orchestrator.event_feed import StatusFeed, store_view
from market_data_orchestrator.federation import TopologyWatcher
from market_data_orchestrator.jobs import JobController, JobState
from market_data_orchestrator.metrics import OrchestratorMetrics
from market_data_orchestrator.security import AuditedRateLimiter, Authenticator
from market_data_orchestrator.supervisor import Supervisor
from market_data_orchestrator.watchers.feedback import FeedbackWatcher
from market_data_orchestrator.watchers.store_health import StoreHealthWatcher, aggregate

__all__ = ["STORE_HEALTH", "Orchestrator"]

logger = structlog.get_logger(__name__)

STORE_HEALTH = "store-health"
"""The actor of the pauses the orchestrator makes while the store is unhealthy."""
SERVICE = "market-data-orchestrator"


class Orchestrator:
    """Everything ``mdo serve`` runs, usable from Python as an async context manager.

    ``limiter`` holds each token's control calls to ``security.control_rate_per_minute``;
    ``refusals`` holds each client address's refused (401) calls to
    ``security.unauthenticated_rate_per_minute`` (burst ``unauthenticated_burst``).
    ``clock`` (monotonic seconds) drives both.
    """

    def __init__(
        self,
        deployment: Deployment,
        *,
        supervisor: JobController | None = None,
        registry: CollectorRegistry | None = None,
        node_id: str = "orchestrator",
        cluster_id: str = "local",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deployment = deployment
        self.supervisor: Any = supervisor or Supervisor(deployment)
        security = deployment.security
        self.auth = Authenticator(security.tokens)
        self.limiter = AuditedRateLimiter(security.control_rate_per_minute, clock=clock)
        self.refusals = AuditedRateLimiter(
            security.unauthenticated_rate_per_minute,
            burst=security.unauthenticated_burst,
            clock=clock,
        )
        self.audit = AuditLog(deployment.audit.path)
        self.metrics = OrchestratorMetrics(registry or CollectorRegistry())
        self.node_id = node_id
        self.store: StoreHealthWatcher | None = None
        store = deployment.store
        if store.url is not None:
            self.store = StoreHealthWatcher(
                store.url,
                poll_interval=store.poll_interval,
                timeout=store.timeout,
                unhealthy_after=store.unhealthy_after,
                healthy_after=store.healthy_after,
                on_unhealthy=self._store_unhealthy,
                on_healthy=self._store_healthy,
            )
        self.feedback: FeedbackWatcher | None = None
        feedback = deployment.feedback
        if feedback.redis_url is not None:
            self.feedback = FeedbackWatcher.from_redis(
                feedback.redis_url.get_secret_value(), stream=feedback.stream
            )
        elif feedback.store_url is not None:
            self.feedback = FeedbackWatcher.from_store(feedback.store_url)
        self.topology = TopologyWatcher(cluster_id, self._own_status, deployment.peers)
        self.status = StatusFeed()
        """Live events for ``GET /v1/events``: the store's view and its feedback."""
        self._store_seen: dict[str, Any] | None = None
        if self.feedback is not None:
            self.feedback.add_listener(self.status.feedback)
        if self.store is not None:
            self.store.add_listener(self._store_observed)
        self.timings: dict[str, float] = {}
        """Seconds from the store's verdict flip to the jobs paused / resumed (last time)."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self.feedback is not None:
            await self.feedback.start()
        if self.store is not None:
            await self.store.start()
        await self.topology.start()
        await self.supervisor.start_all()

    async def aclose(self) -> None:
        self.status.close()
        await self.supervisor.aclose()
        for watcher in (self.store, self.feedback, self.topology):
            if watcher is not None:
                await watcher.aclose()
        await self.audit.aclose()

    # -- the store's health drives the store-writing jobs -------------------------------

    def _writers(self, states: set[JobState]) -> list[str]:
        return [
            job.name
            for job in self.supervisor.jobs()
            if job.writes_to_store and job.state in states
        ]

    async def _store_unhealthy(self, reason: str) -> None:
        started = time.monotonic()
        names = self._writers({JobState.RUNNING, JobState.STARTING})
        for name in names:
            result = await self.supervisor.control(name, ControlAction.PAUSE, by=STORE_HEALTH)
            await self._audit_auto(ControlAction.PAUSE, name, result.ok, reason)
        self.timings["pause_seconds"] = time.monotonic() - started
        logger.warning("store unhealthy: paused its writers", jobs=names, reason=reason)

    async def _store_healthy(self) -> None:
        started = time.monotonic()
        names = [job.name for job in self.supervisor.jobs() if job.paused_by == STORE_HEALTH]
        for name in names:
            result = await self.supervisor.control(name, ControlAction.RESUME, by=STORE_HEALTH)
            await self._audit_auto(ControlAction.RESUME, name, result.ok, "store healthy again")
        self.timings["resume_seconds"] = time.monotonic() - started
        logger.info("store healthy: resumed its writers", jobs=names)

    async def _audit_auto(self, action: ControlAction, job: str, ok: bool, reason: str) -> None:
        await self.audit.record(
            actor=STORE_HEALTH,
            role="system",
            action=str(action),
            target=job,
            result=AuditOutcome.ALLOWED if ok else AuditOutcome.FAILED,
            reason=reason[:1000],
            service=SERVICE,
        )

    def store_view(self) -> dict[str, Any] | None:
        """The store as the orchestrator sees it (``None``: no store is watched)."""
        if self.store is None:
            return None
        last = self.store.last_result
        readable = last is None or last.status is not None
        return store_view(self.store.component(), self.store.status, readable=readable)

    def _store_observed(self) -> None:
        view = self.store_view()
        if view is not None and view != self._store_seen:
            self._store_seen = view
            self.status.publish("store", view)

    # -- health --------------------------------------------------------------------------

    def components(self) -> list[HealthComponent]:
        parts = []
        if self.store is not None:
            parts.append(self.store.component())
        if self.feedback is not None:
            parts.append(self.feedback.component())
        return parts

    def health(self) -> HealthStatus:
        return aggregate(SERVICE, self.components(), self.supervisor.jobs())

    def _own_status(self) -> NodeStatus:
        state = self.health().state if hasattr(self, "supervisor") else HealthState.HEALTHY
        return NodeStatus(
            node_id=self.node_id,
            role=NodeRole.ORCHESTRATOR,
            region="local",
            url=f"http://{self.deployment.service.host}:{self.deployment.service.port}",
            state=state,
            last_seen=datetime.now(UTC),
        )

    def update_metrics(self) -> None:
        self.metrics.update(self.supervisor.jobs(), self.store, self.feedback)

"""market-data-orchestrator: the control plane of the market-data platform.

It supervises pipeline jobs (``mdp run --control`` children), follows the store's health
and feedback, pauses the jobs that write to the store while it is unhealthy, and serves an
API (roles, rate limits, audit) and the ``mdo`` CLI.

>>> from market_data_orchestrator import Orchestrator, load_deployment    # doctest: +SKIP
>>> async with Orchestrator(load_deployment("deployment.yaml")) as orch:  # doctest: +SKIP
...     print(orch.supervisor.jobs())

The names below are imported on first use (PEP 562): ``import market_data_orchestrator``
and ``mdo --help`` do not pay for FastAPI, the supervisor or httpx until they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_core.lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_orchestrator.audit import AuditLog
    from market_data_orchestrator.deployment import Deployment, JobSpec, Role, load_deployment
    from market_data_orchestrator.exceptions import DeploymentError
    from market_data_orchestrator.jobs import JobController, JobInfo, JobState, ReplicaInfo
    from market_data_orchestrator.orchestrator import Orchestrator
    from market_data_orchestrator.service import create_app
    from market_data_orchestrator.supervisor import Supervisor

    __version__: str

_LAZY: dict[str, tuple[str, ...]] = {
    "audit": ("AuditLog",),
    "deployment": ("Deployment", "JobSpec", "Role", "load_deployment"),
    "exceptions": ("DeploymentError",),
    "jobs": ("JobController", "JobInfo", "JobState", "ReplicaInfo"),
    "orchestrator": ("Orchestrator",),
    "service": ("create_app",),
    "supervisor": ("Supervisor",),
}
"""The module of each public name (imported from there on first access)."""
__getattr__, __dir__ = lazy_exports(
    __name__, _LAZY, globals(), version_of="market-data-orchestrator"
)


__all__ = [
    "AuditLog",
    "Deployment",
    "DeploymentError",
    "JobController",
    "JobInfo",
    "JobSpec",
    "JobState",
    "Orchestrator",
    "ReplicaInfo",
    "Role",
    "Supervisor",
    "__version__",
    "create_app",
    "load_deployment",
]

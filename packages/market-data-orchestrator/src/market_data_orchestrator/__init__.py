"""market-data-orchestrator: the control plane of the market-data platform.

It supervises pipeline jobs (``mdp run --control`` children), follows the store's health
and feedback, pauses the jobs that write to the store while it is unhealthy, and serves an
API (roles, rate limits, audit) and the ``mdo`` CLI.

>>> from market_data_orchestrator import Orchestrator, load_deployment    # doctest: +SKIP
>>> async with Orchestrator(load_deployment("deployment.yaml")) as orch:  # doctest: +SKIP
...     print(orch.supervisor.jobs())
"""

from importlib.metadata import version as _version

from market_data_orchestrator.audit import AuditLog
from market_data_orchestrator.deployment import (
    Deployment,
    DeploymentError,
    JobSpec,
    Role,
    load_deployment,
)
from market_data_orchestrator.jobs import JobController, JobInfo, JobState, ReplicaInfo
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.service import create_app
from market_data_orchestrator.supervisor import Supervisor

__version__ = _version("market-data-orchestrator")

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

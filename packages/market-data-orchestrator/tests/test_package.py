import importlib.metadata

import market_data_orchestrator


def test_version_matches_installed_distribution() -> None:
    assert market_data_orchestrator.__version__ == importlib.metadata.version(
        "market-data-orchestrator"
    )


def test_public_api_is_pinned() -> None:
    # Adding to the public API is a decision: this list changes with it, on purpose.
    assert market_data_orchestrator.__all__ == [
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
    for name in market_data_orchestrator.__all__:
        assert getattr(market_data_orchestrator, name) is not None

"""Deployment files: defaults, path resolution, and errors that name file, line and field."""

from pathlib import Path

import pytest

from market_data_core.federation import NodeRole
from market_data_orchestrator.deployment import (
    Deployment,
    DeploymentError,
    JobSpec,
    RestartPolicyName,
    Role,
    load_deployment,
)

DIGEST = "ab" * 32


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    (tmp_path / "pipelines" / "bars.yaml").write_text("name: bars\n")
    path = tmp_path / "deploy.yaml"
    path.write_text(text)
    return path


def test_a_full_deployment_with_defaults_and_resolved_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs:\n"
        "  - name: bars\n"
        "    config: pipelines/bars.yaml\n"
        "    replicas: 2\n"
        "    env: {MDP_DATABASE_URL: 'postgresql://u:hunter2@db/md', PORT: 5432}\n"
        "  - name: backfill\n"
        "    config: pipelines/bars.yaml\n"
        "    schedule: '0 2 * * *'\n"
        "    restart: {policy: never}\n"
        "    writes_to_store: false\n"
        "    cwd: /tmp\n"
        "    stop_timeout: 40\n"
        "store: {url: 'http://127.0.0.1:8000/'}\n"
        "feedback: {redis_url: 'redis://:pw@localhost:6379/0'}\n"
        "peers:\n"
        "  - {node_id: store-1, role: store, url: 'http://10.0.0.2:8000', region: eu-west}\n"
        f"security: {{tokens: [{{name: ops, role: operator, sha256: '{DIGEST.upper()}'}}]}}\n"
        "audit: {path: logs/audit.jsonl}\n"
        "service: {port: 9000}\n",
    )
    deployment = load_deployment(path)
    bars, backfill = deployment.jobs
    assert bars.config == tmp_path / "pipelines" / "bars.yaml"
    assert bars.cwd == tmp_path
    assert bars.replicas == 2
    assert bars.restart.policy is RestartPolicyName.ON_FAILURE
    assert (bars.restart.backoff_initial, bars.restart.backoff_max) == (1.0, 60.0)
    assert (bars.restart.crash_loop_limit, bars.restart.crash_loop_window) == (5, 300.0)
    assert bars.stop_timeout == 15.0  # above mdp's default drain timeout (5 s)
    assert bars.environment() == {
        "MDP_DATABASE_URL": "postgresql://u:hunter2@db/md",
        "PORT": "5432",
    }
    assert "hunter2" not in repr(deployment)
    assert backfill.schedule == "0 2 * * *"
    assert backfill.stop_timeout == 40.0
    assert backfill.cwd == Path("/tmp")
    assert backfill.restart.policy is RestartPolicyName.NEVER
    assert not backfill.writes_to_store
    assert deployment.store.url == "http://127.0.0.1:8000"
    assert (deployment.store.unhealthy_after, deployment.store.healthy_after) == (3, 2)
    assert deployment.feedback.stream == "md:feedback"
    assert deployment.peers[0].role is NodeRole.STORE
    token = deployment.security.tokens[0]
    assert token.role is Role.OPERATOR
    assert token.sha256 == DIGEST
    assert deployment.security.control_rate_per_minute == 30
    assert deployment.security.unauthenticated_rate_per_minute == 30
    assert deployment.security.unauthenticated_burst == 10
    assert deployment.audit.path == tmp_path / "logs" / "audit.jsonl"
    assert (deployment.service.host, deployment.service.port) == ("127.0.0.1", 9000)
    assert deployment.job("backfill") is backfill
    with pytest.raises(KeyError):
        deployment.job("nope")


def test_an_empty_file_is_an_empty_deployment(tmp_path: Path) -> None:
    deployment = load_deployment(write(tmp_path, ""))
    assert deployment.jobs == []
    assert deployment.service.port == 8090


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "jobs:\n  - name: bars\n    config: pipelines/bars.yaml\n    replica: 2\n",
            ["deploy.yaml:4", "jobs.0.replica", "unknown key"],
        ),
        (
            "jobs:\n  - name: bars\n    config: pipelines/bars.yaml\n    schedule: '61 * * * *'\n",
            ["deploy.yaml:", "jobs.0.schedule", "cron"],
        ),
        (
            "jobs: []\nsecurity:\n  tokens:\n    - {name: a, role: root, sha256: '"
            + DIGEST
            + "'}\n",
            ["deploy.yaml:4", "security.tokens.0.role", "viewer"],
        ),
        (
            "jobs: []\npeers:\n  - {node_id: x, role: broker, url: 'http://x'}\n",
            ["deploy.yaml:3", "peers.0.role"],
        ),
        ("jobs: []\nextra: 1\n", ["deploy.yaml:2", "extra", "unknown key"]),
        ("jobs:\n  - name: bars\n    config: missing.yaml\n", ["deploy.yaml:3", "jobs.0.config"]),
        (
            "jobs:\n  - {name: bars, config: pipelines/bars.yaml, replicas: 0}\n",
            ["jobs.0.replicas", "greater than or equal to 1"],
        ),
        (
            "jobs:\n  - {name: a, config: pipelines/bars.yaml}\n"
            "  - {name: a, config: pipelines/bars.yaml}\n",
            ["jobs", "duplicate job name 'a'"],
        ),
        (
            "jobs:\n  - {name: a, config: pipelines/bars.yaml,"
            " restart: {backoff_initial: 10, backoff_max: 1}}\n",
            ["jobs.0.restart", "backoff_max"],
        ),
        ("jobs: [\n", ["deploy.yaml:", "invalid YAML"]),
        ("- 1\n- 2\n", ["a deployment is a mapping"]),
        ("store: {url: 'ftp://x'}\n", ["store.url", "http://"]),
        ("feedback: {store_url: 'redis://x'}\n", ["deploy.yaml:1", "feedback.store_url"]),
        (
            "feedback: {store_url: 'http://x:8080', redis_url: 'redis://x'}\n",
            ["deploy.yaml:1", "feedback", "redis_url or store_url, not both"],
        ),
        (
            "security: {unauthenticated_rate_per_minute: 0}\n",
            ["security.unauthenticated_rate_per_minute", "greater than or equal to 1"],
        ),
        ("security: {unauthenticated_burst: 0}\n", ["security.unauthenticated_burst"]),
        ("jobs:\n  - {name: 'bad name', config: pipelines/bars.yaml}\n", ["jobs.0.name"]),
        (
            "jobs:\n  - {name: a, config: pipelines/bars.yaml, stop_timeout: 0}\n",
            ["deploy.yaml:2", "jobs.0.stop_timeout", "greater than 0"],
        ),
        (
            "jobs:\n  - {name: a, config: pipelines/bars.yaml, replicas: 3, partitions: 2}\n",
            ["jobs.0", "replicas (3) must not exceed partitions (2)"],
        ),
    ],
)
def test_errors_name_the_file_line_and_field(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    with pytest.raises(DeploymentError) as caught:
        load_deployment(write(tmp_path, text))
    for part in expected:
        assert part in str(caught.value)


def test_a_missing_file_is_a_deployment_error(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="cannot read"):
        load_deployment(tmp_path / "nope.yaml")


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    text = (
        "jobs:\n  - name: bars\n    config: pipelines/bars.yaml\n"
        "    env: {MDP_DATABASE_URL: 'postgresql://u:hunter2@db/md'}\n    replicas: -1\n"
    )
    with pytest.raises(DeploymentError) as caught:
        load_deployment(write(tmp_path, text))
    assert "hunter2" not in str(caught.value)


def test_models_built_in_code_keep_their_paths() -> None:
    deployment = Deployment(jobs=[JobSpec(name="j", config=Path("x.yaml"))])
    assert deployment.jobs[0].config == Path("x.yaml")
    assert deployment.jobs[0].cwd is None


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.OPERATOR)
    assert Role.OPERATOR.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.OPERATOR)


def test_the_example_deployment_loads() -> None:
    root = Path(__file__).resolve().parents[3]
    deployment = load_deployment(root / "examples" / "orchestrator" / "deployment.yaml")
    assert [job.name for job in deployment.jobs] == ["quickstart", "real-data-replay"]
    assert all(job.config.exists() for job in deployment.jobs)
    assert {token.role for token in deployment.security.tokens} == {"viewer", "operator", "admin"}


def test_the_service_quickstart_deployment_follows_the_stores_feedback() -> None:
    """docs/quickstart.md step 4: no Redis, so the store service's own stream."""
    root = Path(__file__).resolve().parents[3]
    deployment = load_deployment(root / "examples" / "service" / "deployment.yaml")
    assert deployment.store.url == "http://127.0.0.1:8080"
    assert deployment.feedback.store_url == deployment.store.url
    assert deployment.feedback.redis_url is None

"""What the orchestrator puts on the wire validates against core's committed JSON Schemas:
its ``/readyz`` body and ``Orchestrator.health()`` (healthy, and unhealthy while the store
is down), its topology (``ClusterTopology`` of ``NodeStatus``), the results of control
actions (``ControlResult``: accepted and rejected) and its audit records (``AuditEnvelope``,
from the API and from the file); and it declares no contract of its own.

A real ``mds serve`` (SQLite) is the store it watches and one of its peers, a real
``mdp run`` child is its job. The schemas are those of ``$MD_CONTRACTS_DIR`` (default: the
repository's docs/contracts), so ``nox -s contracts`` runs this suite against the current
schemas and against a previous release's, with the orchestrator installed from its wheel."""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from market_data_core.testing.contracts import ContractSchemas, redeclared_contracts
from market_data_core.testing.servers import free_port
from market_data_orchestrator.deployment import load_deployment
from market_data_orchestrator.orchestrator import STORE_HEALTH, Orchestrator
from market_data_orchestrator.security import hash_token
from market_data_orchestrator.service import create_app
from market_data_store.testing import StoreService

SCHEMAS = ContractSchemas.from_env(Path(__file__).resolve().parents[4] / "docs" / "contracts")
TOKENS = {"viewer": "v-token-7a1c", "operator": "o-token-2b8d", "admin": "a-token-9e4f"}


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def _wait_for(what: str, condition: Any, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreService]:
    with StoreService(tmp_path_factory.mktemp("store")) as service:
        yield service


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("orchestrator")


@pytest.fixture(scope="module")
def client(store: StoreService, workdir: Path) -> Iterator[TestClient]:
    (workdir / "job.yaml").write_text(
        "name: paced\n"
        "nodes:\n"
        "  - {id: trades, type: synthetic, params: {symbols: 2, count: 1000000,"
        " batch_size: 500, rate: 2000}}\n"
        "  - {id: sink, type: 'null'}\n"
        "edges: [trades -> sink]\n"
    )
    tokens = "\n".join(
        f"    - {{name: {role}-user, role: {role}, sha256: {hash_token(token)}}}"
        for role, token in TOKENS.items()
    )
    (workdir / "deployment.yaml").write_text(
        "jobs:\n"
        "  - {name: paced, config: job.yaml, writes_to_store: true}\n"
        "store:\n"
        f"  url: {store.url}\n"
        "  poll_interval: 0.1\n"
        "  unhealthy_after: 2\n"
        "  healthy_after: 1\n"
        "peers:\n"
        f"  - {{node_id: store-1, role: store, url: '{store.url}'}}\n"
        f"  - {{node_id: gone, role: pipeline, url: 'http://127.0.0.1:{free_port()}'}}\n"
        "security:\n"
        "  control_rate_per_minute: 1000\n"
        f"  tokens:\n{tokens}\n"
        f"audit: {{path: {workdir / 'audit.jsonl'}}}\n"
    )
    orchestrator = Orchestrator(load_deployment(workdir / "deployment.yaml"))
    with TestClient(create_app(orchestrator)) as test_client:
        _wait_for("the job running", lambda: _job(test_client)["state"] == "running")
        _wait_for("the store healthy", lambda: _ready(test_client)["state"] == "healthy")
        yield test_client


def _job(client: TestClient) -> dict[str, Any]:
    answer: dict[str, Any] = client.get("/v1/jobs/paced", headers=_auth("viewer")).json()
    return answer


def _ready(client: TestClient) -> dict[str, Any]:
    answer: dict[str, Any] = client.get("/readyz").json()
    return answer


def test_readiness_and_health(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    SCHEMAS.assert_valid("HealthStatus", ready.json())
    live = client.get("/healthz")
    assert live.status_code == 200
    SCHEMAS.assert_valid("HealthStatus", live.json())
    assert (live.json()["service"], live.json()["version"]) == (
        ready.json()["service"],
        ready.json()["version"],
    )
    names = {component["name"] for component in ready.json()["components"]}
    assert "job:paced" in names
    assert len(names) >= 2, names  # the store's component too
    orchestrator: Orchestrator = client.app.state.orchestrator  # type: ignore[attr-defined]
    SCHEMAS.assert_valid("HealthStatus", json.loads(orchestrator.health().model_dump_json()))
    for component in orchestrator.components():
        SCHEMAS.assert_valid("HealthComponent", component.model_dump(mode="json"))


def test_topology(client: TestClient) -> None:
    def nodes() -> dict[str, dict[str, Any]]:
        topology = client.get("/v1/topology", headers=_auth("viewer")).json()
        SCHEMAS.assert_valid("ClusterTopology", topology)
        return {node["node_id"]: node for node in topology["nodes"]}

    seen = _wait_for(
        "the store peer seen", lambda: (n := nodes())["store-1"]["state"] == "healthy" and n
    )
    assert seen["orchestrator"]["role"] == "orchestrator"
    assert seen["gone"]["state"] == "unhealthy"  # nothing listens there
    for node in seen.values():
        SCHEMAS.assert_valid("NodeStatus", node)
    orchestrator: Orchestrator = client.app.state.orchestrator  # type: ignore[attr-defined]
    SCHEMAS.assert_valid(
        "ClusterTopology", orchestrator.topology.snapshot().model_dump(mode="json")
    )


def test_control_results_accepted_and_rejected(client: TestClient) -> None:
    results = []
    for verb, role in (("pause", "operator"), ("resume", "operator"), ("reload", "admin")):
        answer = client.post(f"/v1/jobs/paced/{verb}", headers=_auth(role))
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "accepted"
        results.append(answer.json())
    assert client.post("/v1/jobs/paced/stop", headers=_auth("operator")).status_code == 200
    _wait_for("the job stopped", lambda: _job(client)["state"] == "stopped")
    refused = client.post("/v1/jobs/paced/pause", headers=_auth("operator"))
    assert refused.status_code == 409
    assert refused.json()["status"] == "rejected"
    results.append(refused.json())
    for result in results:
        SCHEMAS.assert_valid("ControlResult", result)
    assert client.post("/v1/jobs/paced/start", headers=_auth("operator")).status_code == 200
    _wait_for("the job running again", lambda: _job(client)["state"] == "running")


def test_audit_records_from_the_api_and_the_file(client: TestClient, workdir: Path) -> None:
    assert client.post("/v1/jobs/paced/pause", headers=_auth("viewer")).status_code == 403
    assert client.post("/v1/jobs/paced/resume", headers=_auth("operator")).status_code == 200
    records = client.get("/v1/audit", headers=_auth("admin")).json()
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    assert {"allowed", "denied"} <= {record["result"] for record in records}
    assert len(lines) >= len(records) >= 2
    for record in records:
        SCHEMAS.assert_valid("AuditEnvelope", record)
    for line in lines:
        SCHEMAS.assert_valid("AuditEnvelope", json.loads(line))


def test_unhealthy_while_the_store_is_down(
    client: TestClient, store: StoreService, workdir: Path
) -> None:
    store.stop()
    try:
        down = _wait_for(
            "503 from /readyz", lambda: (r := client.get("/readyz")).status_code == 503 and r
        )
        SCHEMAS.assert_valid("HealthStatus", down.json())
        assert down.json()["state"] == "unhealthy"
        _wait_for("the writer paused", lambda: _job(client)["paused_by"] == STORE_HEALTH)
    finally:
        store.start()
    _wait_for("the writer resumed", lambda: _job(client)["paused_by"] is None)
    back = _wait_for(
        "200 from /readyz", lambda: (r := client.get("/readyz")).status_code == 200 and r
    )
    SCHEMAS.assert_valid("HealthStatus", back.json())
    automatic = [
        json.loads(line)
        for line in (workdir / "audit.jsonl").read_text().splitlines()
        if json.loads(line)["actor"] == STORE_HEALTH
    ]
    assert {record["action"] for record in automatic} >= {"pause", "resume"}
    for record in automatic:
        SCHEMAS.assert_valid("AuditEnvelope", record)


def test_the_orchestrator_does_not_redeclare_core_contracts(client: TestClient) -> None:
    """Its source (as installed) and every module of it that serving imported."""
    assert client.get("/healthz").status_code == 200
    assert redeclared_contracts("market_data_orchestrator") == []

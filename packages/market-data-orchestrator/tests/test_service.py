"""The orchestrator's API with a real supervisor and a real `mdp run` child: roles, rate
limits, audit, health and metrics, as an operator would meet them."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from market_data_orchestrator.deployment import load_deployment
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.security import hash_token
from market_data_orchestrator.service import create_app

TOKENS = {"viewer": "v-token-1a2b", "operator": "o-token-3c4d", "admin": "a-token-5e6f"}


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    (tmp_path / "job.yaml").write_text(
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
    (tmp_path / "deployment.yaml").write_text(
        "jobs:\n"
        "  - {name: paced, config: job.yaml, writes_to_store: false}\n"
        "security:\n"
        "  control_rate_per_minute: 4\n"
        f"  tokens:\n{tokens}\n"
        f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
    )
    orchestrator = Orchestrator(load_deployment(tmp_path / "deployment.yaml"))
    with TestClient(create_app(orchestrator)) as test_client:
        deadline = time.monotonic() + 60
        while (
            test_client.get("/v1/jobs/paced", headers=_auth("viewer")).json()["state"] != "running"
        ):
            assert time.monotonic() < deadline, "the job never reached running"
            time.sleep(0.1)
        yield test_client


def test_roles_decide_who_may_do_what_and_everything_is_audited(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    listed = client.get("/v1/jobs", headers=_auth("viewer"))
    assert [job["name"] for job in listed.json()] == ["paced"]
    assert client.post("/v1/jobs/paced/pause", headers=_auth("viewer")).status_code == 403
    paused = client.post("/v1/jobs/paced/pause", headers=_auth("operator"))
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "accepted"
    job = client.get("/v1/jobs/paced", headers=_auth("viewer")).json()
    assert job["paused_by"] == "operator-user"
    assert client.post("/v1/jobs/paced/reload", headers=_auth("operator")).status_code == 403
    assert client.post("/v1/jobs/paced/resume", headers=_auth("operator")).json()["status"] == (
        "accepted"
    )
    assert client.post("/v1/jobs/paced/reload", headers=_auth("admin")).status_code == 200
    assert client.post("/v1/jobs/nope/pause", headers=_auth("admin")).status_code == 404
    assert client.get("/v1/audit", headers=_auth("operator")).status_code == 403
    audit = client.get("/v1/audit", headers=_auth("admin")).json()
    seen = {(a["actor"], a["action"], a["result"]) for a in audit}
    assert ("operator-user", "POST /v1/jobs/paced/pause", "allowed") in seen
    assert ("viewer-user", "POST /v1/jobs/paced/pause", "denied") in seen
    assert ("anonymous", "GET /v1/jobs", "denied") in seen
    assert ("admin-user", "POST /v1/jobs/paced/reload", "allowed") in seen
    written = (tmp_path / "audit.jsonl").read_text()
    assert all(token not in written for token in TOKENS.values())


def test_control_actions_are_rate_limited_per_caller(client: TestClient) -> None:
    answers = [client.post("/v1/jobs/paced/resume", headers=_auth("operator")) for _ in range(6)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert int(limited[0].headers["Retry-After"]) >= 1
    # another caller has its own budget
    assert client.post("/v1/jobs/paced/resume", headers=_auth("admin")).status_code == 200


def test_health_and_metrics(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    components = {c["name"]: c for c in ready.json()["components"]}
    assert components["job:paced"]["state"] == "healthy"
    live = client.get("/healthz").json()
    assert (live["service"], live["state"], live["components"]) == (
        "market-data-orchestrator",
        "healthy",
        [],
    )
    metrics = client.get("/metrics").text
    assert "orchestrator_jobs_running 1.0" in metrics
    assert 'orchestrator_desired_replicas{job="paced"} 1.0' in metrics


def test_topology_and_feedback_views(client: TestClient) -> None:
    assert client.get("/v1/topology").status_code == 401
    topology = client.get("/v1/topology", headers=_auth("viewer")).json()
    nodes = {node["node_id"]: node for node in topology["nodes"]}
    assert nodes["orchestrator"]["role"] == "orchestrator"
    assert nodes["orchestrator"]["state"] == "healthy"
    assert client.get("/v1/feedback", headers=_auth("viewer")).json() == {"transport": None}
    job = client.get("/v1/jobs/paced", headers=_auth("viewer")).json()
    assert job["replicas"][0]["pid"] > 0
    assert job["restarts"] == 0


def test_topology_edits_need_admin_and_are_audited(client: TestClient) -> None:
    peer = {"node_id": "store-eu", "role": "store", "url": "http://127.0.0.1:9"}
    assert (
        client.post("/v1/topology/peers", json=peer, headers=_auth("operator")).status_code == 403
    )
    added = client.post("/v1/topology/peers", json=peer, headers=_auth("admin"))
    assert added.status_code == 201, added.text
    assert "store-eu" in [n["node_id"] for n in added.json()["nodes"]]
    again = client.post("/v1/topology/peers", json=peer, headers=_auth("admin"))
    assert again.status_code == 409
    removed = client.delete("/v1/topology/peers/store-eu", headers=_auth("admin"))
    assert "store-eu" not in [n["node_id"] for n in removed.json()["nodes"]]
    assert client.delete("/v1/topology/peers/store-eu", headers=_auth("admin")).status_code == 404
    audit = client.get("/v1/audit", headers=_auth("admin")).json()
    seen = {(a["actor"], a["action"], a["result"]) for a in audit}
    assert ("admin-user", "POST /v1/topology/peers", "allowed") in seen
    assert ("operator-user", "POST /v1/topology/peers", "denied") in seen


def test_the_openapi_spec_documents_every_answer() -> None:
    """What clients generated from the spec must expect: refusals, readiness, media types
    (the integration tests fuzz the running API against this spec)."""
    from market_data_orchestrator.deployment import Deployment

    spec = create_app(Orchestrator(Deployment()), manage=False).openapi()
    paths = spec["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if path.startswith("/v1/"):
                assert "401" in codes, f"{method} {path}"
            if method == "post" and path.startswith("/v1/jobs/"):
                assert {"403", "404", "409", "429"} <= codes, f"{method} {path}"
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(paths["/v1/events"]["get"]["responses"]["200"]["content"]) == {"text/event-stream"}

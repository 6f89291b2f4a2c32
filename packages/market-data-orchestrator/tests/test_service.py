"""The orchestrator's API with a real supervisor and a real `mdp run` child: roles, rate
limits, audit, health and metrics, as an operator would meet them."""

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from market_data_core import AuditEnvelope
from market_data_core.testing import FakeClock
from market_data_core.testing.servers import scaled
from market_data_orchestrator.deployment import AuditSettings, Deployment, load_deployment
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.security import hash_token
from market_data_orchestrator.service import create_app

TOKENS = {"viewer": "v-token-1a2b", "operator": "o-token-3c4d", "admin": "a-token-5e6f"}


def _bare(tmp_path: Path) -> Deployment:
    """No jobs, and an audit log in the test's directory (the default is the working directory's)."""
    return Deployment(audit=AuditSettings(path=tmp_path / "audit.jsonl"))


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
        deadline = time.monotonic() + scaled(60)
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
    seen = {(a["actor"], a["action"], a["target"], a["result"]) for a in audit}
    assert ("operator-user", "POST /v1/jobs/{name}/pause", "paced", "allowed") in seen
    assert ("viewer-user", "POST /v1/jobs/{name}/pause", "paced", "denied") in seen
    assert ("anonymous", "GET /v1/jobs", None, "denied") in seen
    assert ("admin-user", "POST /v1/jobs/{name}/reload", "paced", "allowed") in seen
    assert ("admin-user", "POST /v1/jobs/{name}/pause", "nope", "failed") in seen
    assert ("operator-user", "GET /v1/audit", None, "denied") in seen
    written = (tmp_path / "audit.jsonl").read_text()
    assert all(token not in written for token in TOKENS.values())


def test_control_actions_are_rate_limited_per_caller(client: TestClient) -> None:
    answers = [client.post("/v1/jobs/paced/resume", headers=_auth("operator")) for _ in range(6)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert int(limited[0].headers["Retry-After"]) >= 1
    # another caller has its own budget
    assert client.post("/v1/jobs/paced/resume", headers=_auth("admin")).status_code == 200


def test_an_operator_scales_a_running_job_and_the_audit_says_from_what_to_what(
    client: TestClient,
) -> None:
    body = {"replicas": 2}
    assert (
        client.post("/v1/jobs/paced/scale", json=body, headers=_auth("viewer")).status_code == 403
    )
    answer = client.post("/v1/jobs/paced/scale", json=body, headers=_auth("operator"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["desired_replicas"] == 2
    assert len(answer.json()["replicas"]) == 2
    deadline = time.monotonic() + scaled(60)
    while [
        r["state"] for r in client.get("/v1/jobs/paced", headers=_auth("viewer")).json()["replicas"]
    ] != ["running", "running"]:
        assert time.monotonic() < deadline, "the second replica never ran"
        time.sleep(0.1)
    assert 'orchestrator_desired_replicas{job="paced"} 2.0' in client.get("/metrics").text

    zero = client.post("/v1/jobs/paced/scale", json={"replicas": 0}, headers=_auth("operator"))
    assert zero.status_code == 422
    assert "replicas" in zero.text
    junk = client.post("/v1/jobs/paced/scale", json={"count": 2}, headers=_auth("operator"))
    assert junk.status_code == 422
    for loose in ("2", 2.0, True):  # a count is a JSON integer, nothing coerced
        text = client.post(
            "/v1/jobs/paced/scale", json={"replicas": loose}, headers=_auth("operator")
        )
        assert text.status_code == 422, loose
        assert "replicas" in text.text
    twice = client.post(  # which count would be meant? refused, never guessed
        "/v1/jobs/paced/scale",
        content='{"replicas": 1, "replicas": 5}',
        headers={**_auth("operator"), "Content-Type": "application/json"},
    )
    assert twice.status_code == 422
    assert "duplicate key 'replicas'" in twice.text
    latin = client.post(
        "/v1/jobs/paced/scale",
        content=b'{"replicas": 1}',
        headers={**_auth("operator"), "Content-Type": "application/json; charset=latin-1"},
    )
    assert latin.status_code == 415
    assert client.post("/v1/jobs/nope/scale", json=body, headers=_auth("admin")).status_code == 404
    down = client.post("/v1/jobs/paced/scale", json={"replicas": 1}, headers=_auth("admin"))
    assert down.status_code == 200, down.text
    assert len(down.json()["replicas"]) == 1

    audit = client.get("/v1/audit", headers=_auth("admin")).json()
    scales = [
        (a["actor"], a["target"], a["result"], a.get("reason"))
        for a in audit
        if a["action"] == "POST /v1/jobs/{name}/scale"
    ]
    assert ("operator-user", "paced", "allowed", "replicas 1 -> 2") in scales
    assert ("admin-user", "paced", "allowed", "replicas 2 -> 1") in scales
    assert ("viewer-user", "paced", "denied") in {s[:3] for s in scales}
    assert ("operator-user", "paced", "failed") in {s[:3] for s in scales}  # the 422s
    assert ("admin-user", "nope", "failed") in {s[:3] for s in scales}


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
    feedback = client.get("/v1/feedback", headers=_auth("viewer")).json()
    assert (feedback["transport"], feedback["connected"]) == (None, False)
    assert feedback["reason"].startswith("no feedback transport configured")
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


def test_the_openapi_spec_documents_every_answer(tmp_path: Path) -> None:
    """What clients generated from the spec must expect: refusals, readiness, media types
    (the integration tests fuzz the running API against this spec)."""
    spec = create_app(Orchestrator(_bare(tmp_path)), manage=False).openapi()
    paths = spec["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if path.startswith("/v1/"):
                assert {"401", "429"} <= codes, f"{method} {path}"
            if method == "post" and path.startswith("/v1/jobs/"):
                assert {"403", "404", "409", "429"} <= codes, f"{method} {path}"
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(paths["/v1/events"]["get"]["responses"]["200"]["content"]) == {"text/event-stream"}


# -- the audit trail and the budget of refused calls, without a job --------------------


@dataclass
class Bare:
    """An API without jobs; its limiters run on ``clock``; ``at(address)`` is a client
    calling from that address."""

    orchestrator: Orchestrator
    clock: FakeClock
    audit_path: Path

    def at(self, address: str) -> TestClient:
        return TestClient(create_app(self.orchestrator, manage=False), client=(address, 4000))

    def records(self) -> list[dict[str, Any]]:
        lines = self.audit_path.read_text().splitlines() if self.audit_path.exists() else []
        for line in lines:
            AuditEnvelope.model_validate_json(line)  # every record is a valid envelope
        return [json.loads(line) for line in lines]


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Bare]:
    tokens = "\n".join(
        f"    - {{name: {role}-user, role: {role}, sha256: {hash_token(token)}}}"
        for role, token in TOKENS.items()
    )
    (tmp_path / "deployment.yaml").write_text(
        "security:\n"
        "  unauthenticated_rate_per_minute: 6\n"
        "  unauthenticated_burst: 3\n"
        f"  tokens:\n{tokens}\n"
        f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
    )
    clock = FakeClock()
    orchestrator = Orchestrator(load_deployment(tmp_path / "deployment.yaml"), clock=clock)
    yield Bare(orchestrator, clock, tmp_path / "audit.jsonl")
    asyncio.run(orchestrator.audit.aclose())


def test_long_paths_and_headers_are_refused_and_audited_never_a_server_error(bare: Bare) -> None:
    client = bare.at("10.0.0.1")
    name, longer = "j" * 100, "k" * 300
    assert client.post(f"/v1/jobs/{name}/pause").status_code == 401
    headers = {**_auth("operator"), "X-Request-Id": "r" * 500}
    assert client.post(f"/v1/jobs/{longer}/pause", headers=headers).status_code == 404
    assert client.request("X" * 100, "/v1/jobs").status_code == 401
    anonymous, unknown, odd = bare.records()
    assert (anonymous["actor"], anonymous["action"], anonymous["target"]) == (
        "anonymous",
        "POST /v1/jobs/{name}/pause",
        name,
    )
    assert (anonymous["result"], anonymous["details"]) == (
        "denied",
        {"client": "10.0.0.1", "status": 401},
    )
    assert (unknown["actor"], unknown["action"], unknown["result"]) == (
        "operator-user",
        "POST /v1/jobs/{name}/pause",
        "failed",
    )
    assert unknown["target"] == "k" * 255 + "…"  # cut to the envelope's 256 characters
    assert unknown["request_id"] == "r" * 127 + "…"
    assert unknown["details"]["status"] == 404
    assert odd["action"] == "X" * 16 + " /v1/jobs"


def test_every_refused_call_under_v1_is_audited(bare: Bare) -> None:
    client = bare.at("10.0.0.2")
    admin, viewer = _auth("admin"), _auth("viewer")
    assert client.get("/v1/nope").status_code == 401  # every /v1 route needs a token
    assert client.get("/v1/nope", headers=viewer).status_code == 404
    assert client.delete("/v1/jobs", headers=viewer).status_code == 405
    assert client.get("/v1/jobs/ghost", headers=viewer).status_code == 404
    assert client.post("/v1/jobs/ghost/reload", headers=viewer).status_code == 403
    peer = {"node_id": "x"}
    assert client.post("/v1/topology/peers", json=peer, headers=admin).status_code == 422
    not_json = {**admin, "Content-Type": "application/json"}
    assert client.post("/v1/topology/peers", content=b"\xff", headers=not_json).status_code == 400
    assert client.delete("/v1/topology/peers/ghost", headers=admin).status_code == 404
    assert client.get("/v1/jobs", headers=viewer).status_code == 200  # a read: not audited
    assert client.get("/v1/audit", headers=admin).status_code == 200
    seen = [
        (r["actor"], r["action"], r["target"], r["result"], r["details"].get("status"))
        for r in bare.records()
    ]
    assert seen == [
        ("anonymous", "GET (unknown route)", "/v1/nope", "denied", 401),
        ("viewer-user", "GET (unknown route)", "/v1/nope", "failed", 404),
        ("viewer-user", "DELETE /v1/jobs", None, "failed", 405),
        ("viewer-user", "GET /v1/jobs/{name}", "ghost", "failed", 404),
        ("viewer-user", "POST /v1/jobs/{name}/reload", "ghost", "denied", 403),
        ("admin-user", "POST /v1/topology/peers", None, "failed", 422),
        ("admin-user", "POST /v1/topology/peers", None, "failed", 400),
        ("admin-user", "DELETE /v1/topology/peers/{node_id}", "ghost", "failed", 404),
        ("admin-user", "GET /v1/audit", None, "allowed", None),
    ]


def test_refused_calls_are_rate_limited_per_address_and_bounded_in_the_audit_log(
    bare: Bare,
) -> None:
    """Budget 3 at once, then 6 a minute (one every 10 s): the rest are 429, and of those
    only the first of each burst is written; the next record counts the others."""
    client, other = bare.at("10.0.0.3"), bare.at("10.0.0.4")
    answers = [client.post("/v1/jobs/x/pause") for _ in range(20)]
    assert [a.status_code for a in answers] == [401] * 3 + [429] * 17
    assert answers[-1].headers["Retry-After"] == "10"
    assert client.get("/v1/jobs", headers=_auth("viewer")).status_code == 200  # a token works
    assert other.post("/v1/jobs/x/pause").status_code == 401  # another address, its own budget
    bare.clock.now += 10
    assert client.post("/v1/jobs/x/pause").status_code == 401  # a token came back
    assert client.post("/v1/jobs/x/pause").status_code == 429  # a new burst: audited again
    records = [(r["details"]["client"], r["details"]) for r in bare.records()]
    assert [details["status"] for address, details in records if address == "10.0.0.3"] == [
        401,
        401,
        401,
        429,
        401,
        429,
    ]
    after_the_burst = [d for a, d in records if a == "10.0.0.3"][4]
    assert after_the_burst["suppressed"] == 16  # the 429s not written
    assert [a for a, _ in records].count("10.0.0.4") == 1


def test_control_calls_over_budget_are_audited_once_per_burst(bare: Bare) -> None:
    client = bare.at("10.0.0.5")
    answers = [client.post("/v1/jobs/x/pause", headers=_auth("operator")) for _ in range(40)]
    statuses = [a.status_code for a in answers]
    assert statuses == [404] * 30 + [429] * 10  # 30 control calls a minute (the default)
    bare.clock.now += 2
    assert client.post("/v1/jobs/x/pause", headers=_auth("operator")).status_code == 404
    results = [(r["result"], r["details"].get("suppressed")) for r in bare.records()]
    assert results == [("failed", None)] * 30 + [("denied", None), ("failed", 9)]


def test_the_access_log_has_each_request_and_no_query_secret(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    secret = "query-canary-51f0"
    app = create_app(Orchestrator(_bare(tmp_path)), manage=False)
    with TestClient(app) as client, capture_logs() as logs:
        client.get("/healthz", params={"token": secret, "verbose": "1"})
        client.get("/v1/jobs", params={"access_token": secret})
        client.get(f"/v1/jobs?t={secret}&{secret}")
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert [(r["path"], r["status"]) for r in requests] == [
        ("/healthz", 200), ("/v1/jobs", 401), ("/v1/jobs", 401)
    ]  # fmt: skip
    # only a route's own parameters show their values: these routes declare none
    assert [r["query"] for r in requests] == ["***&***", "***", "***&***"]
    assert secret not in json.dumps(logs)


def test_errors_are_rfc_9457_problems_and_the_spec_says_so(tmp_path: Path) -> None:
    from market_data_core import Problem

    app = create_app(Orchestrator(_bare(tmp_path)), manage=False)
    with TestClient(app) as client:
        answers = {
            401: client.get("/v1/jobs"),
            404: client.get("/nothing-here"),
            405: client.delete("/healthz"),
        }
        spec = client.get("/openapi.json").json()
    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert Problem.model_validate(answer.json()).status == status
    assert answers[401].headers["WWW-Authenticate"] == "Bearer"
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1"):
                assert operation["security"] == [{"bearerAuth": []}], path
            for status, response in operation["responses"].items():
                schema = next(iter(response.get("content", {}).values()), {}).get("schema", {})
                if schema == {"$ref": "#/components/schemas/Problem"}:
                    assert list(response["content"]) == ["application/problem+json"], path
                elif int(status) >= 400:  # a 409 ControlResult, a 503 HealthStatus
                    assert schema["$ref"].rsplit("/", 1)[-1] in {"ControlResult", "HealthStatus"}


def test_swagger_ui_works_offline(tmp_path: Path) -> None:
    import re

    with TestClient(create_app(Orchestrator(_bare(tmp_path)), manage=False)) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        links = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        links += re.findall(r"""url: ?['"]([^'"]+)['"]""", page.text)
        assert links
        assert not [link for link in links if "://" in link or link.startswith("//")]
        for link in links:
            assert client.get(link).status_code == 200, link
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        for path in ("/docs", "/healthz", "/v1/jobs", "/no-such-page"):
            assert client.get(path).headers["X-Content-Type-Options"] == "nosniff", path

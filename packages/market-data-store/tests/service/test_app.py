"""The store service end to end in process: real SQLite, real coordinator, real FastAPI."""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from market_data_core import FeedbackEvent, HealthStatus
from market_data_core.testing import T0, make_bar, make_quote, make_trade
from market_data_core.testing.servers import scaled
from market_data_store.service import create_app
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

from .conftest import ADMIN_TOKEN, make_gated  # noqa: TID252 - test helpers

JSON = {"Content-Type": "application/json"}
BARS_RANGE = {
    "symbol": "AAPL",
    "timeframe": "1m",
    "start": T0.isoformat(),
    "end": (T0 + timedelta(hours=1)).isoformat(),
}


def _bars(n: int) -> list[dict[str, Any]]:
    return [make_bar(start=T0 + timedelta(minutes=i)).model_dump(mode="json") for i in range(n)]


def _eventually(client: TestClient, path: str, params: dict[str, Any], count: int) -> Any:
    deadline = time.monotonic() + scaled(10)
    while time.monotonic() < deadline:
        body = client.get(path, params=params).json()
        items = body["items"] if isinstance(body, dict) else body
        if len(items) >= count:
            return body
        time.sleep(0.02)
    raise AssertionError(f"{path} never returned {count} items")


def test_liveness_and_readiness(client: TestClient) -> None:
    live = client.get("/healthz")
    assert live.status_code == 200
    liveness = HealthStatus.model_validate(live.json())
    assert (liveness.service, liveness.state, liveness.components) == (
        "market-data-store",
        "healthy",
        (),
    )
    ready = client.get("/readyz")
    assert ready.status_code == 200
    status = HealthStatus.model_validate(ready.json())
    assert status.state == "healthy"
    names = {c.name for c in status.components}
    assert {"database", "write_queue", "workers", "circuit_breaker", "feedback_transport"} <= names


def test_ingest_then_query_bars(client: TestClient) -> None:
    response = client.post("/v1/bars", json=_bars(30))
    assert response.status_code == 202
    assert response.json() == {"accepted": 30, "table": "bars", "durable": True}
    page = client.get("/v1/bars", params=BARS_RANGE | {"limit": 20}).json()  # durable: at once
    assert len(page["items"]) == 19  # a full page ends on a complete start
    assert page["next_start"] is not None
    rest = client.get(
        "/v1/bars", params=BARS_RANGE | {"limit": 20, "start": page["next_start"]}
    ).json()
    assert len(rest["items"]) == 11
    assert rest["next_start"] is None
    assert len({b["start"] for b in page["items"] + rest["items"]}) == 30
    latest = client.get("/v1/bars/latest", params={"timeframe": "1m"}).json()
    assert latest[0]["start"] == (T0 + timedelta(minutes=29)).isoformat().replace("+00:00", "Z")


def test_trades_quotes_and_freshness(client: TestClient) -> None:
    trades = [
        make_trade(ts=T0 + timedelta(seconds=i), trade_id=str(i)).model_dump(mode="json")
        for i in range(5)
    ]
    assert client.post("/v1/trades", json=trades).status_code == 202
    assert client.post("/v1/quotes", json=[make_quote().model_dump(mode="json")]).status_code == 202
    window = {
        "symbol": "AAPL",
        "start": T0.isoformat(),
        "end": (T0 + timedelta(minutes=1)).isoformat(),
    }
    assert len(_eventually(client, "/v1/trades", window, 5)) == 5
    assert len(_eventually(client, "/v1/quotes", window, 1)) == 1
    fresh = {(f["table"], f["symbol"]): f for f in client.get("/v1/freshness").json()}
    assert fresh[("trades", "AAPL")]["rows"] == 5


def test_invalid_records_are_422_naming_index_and_field(client: TestClient) -> None:
    bars = _bars(3)
    bars[1]["volume"] = -5
    response = client.post("/v1/bars", json=bars)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors[0]["loc"] == [1, "volume"]
    bars[1]["volume"] = 1
    bars[2]["low"] = 1e9
    response = client.post("/v1/bars", json=bars)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == [2]
    assert "low (1000000000.0) is above high" in response.json()["errors"][0]["msg"]
    not_json = client.post("/v1/bars", content=b"not json", headers=JSON)
    assert not_json.status_code == 422
    assert not_json.json()["errors"][0]["type"] == "json_invalid"
    assert client.post("/v1/bars", json={"not": "a list"}).status_code == 422


def test_too_large_is_413(client: TestClient) -> None:
    assert client.post("/v1/bars", json=_bars(101)).status_code == 413
    huge = b"[" + b" " * (64 * 1024) + b"]"
    assert client.post("/v1/bars", content=huge).status_code == 413


def test_idempotency_key(client: TestClient) -> None:
    headers = {"Idempotency-Key": "batch-0001"}
    first = client.post("/v1/bars", json=_bars(2), headers=headers)
    again = client.post("/v1/bars", json=_bars(2), headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replay"] == "true"
    other = client.post("/v1/bars", json=_bars(3), headers=headers)
    assert other.status_code == 422
    assert "different request body" in other.json()["detail"]
    metrics = client.get("/metrics").text
    assert 'mds_ingest_records_total{table="bars"} 2.0' in metrics


def test_hard_backpressure_is_429_with_retry_after(settings: StoreSettings) -> None:
    settings = settings.model_copy(
        update={"queue_capacity": 10, "batch_size": 1, "workers": 1, "ack": "queued"}
    )
    store, backend = make_gated(settings)
    with TestClient(create_app(settings, store=store)) as client:
        backend.gate.clear()  # writes stall: the queue fills
        for i in range(9):
            client.post(
                "/v1/bars", json=[make_bar(start=T0 + timedelta(minutes=i)).model_dump(mode="json")]
            )
        deadline = time.monotonic() + scaled(10)
        while client.get("/v1/feedback").json().get("level") != "hard":
            assert time.monotonic() < deadline, "never reached hard backpressure"
            time.sleep(0.02)
        refused = client.post("/v1/bars", json=_bars(1))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        event = FeedbackEvent.model_validate(client.get("/v1/feedback").json())
        assert event.level == "hard"
        backend.gate.set()  # writes resume: everything accepted lands
        page = _eventually(client, "/v1/bars", BARS_RANGE, 9)
        assert len(page["items"]) == 9
        assert 'mds_ingest_rejected_total{reason="backpressure"} 1.0' in client.get("/metrics").text


def test_metrics_exposition(client: TestClient) -> None:
    client.post("/v1/bars", json=_bars(4))
    client.get("/readyz")
    text = client.get("/metrics").text
    for name in ("mds_write_queue_size", "mds_write_queue_capacity", "mds_backpressure_level",
                 "mds_records_accepted_total", "mds_http_requests_total", "mds_readiness_state"):  # fmt: skip
        assert f"\n{name}" in text or text.startswith(name) or f"# TYPE {name}" in text
    assert 'mds_http_requests_total{route="/v1/bars",status="202"} 1.0' in text


def test_admin_requires_the_token_and_is_audited(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    assert client.get("/v1/admin/schema-version").status_code == 401
    wrong = client.get("/v1/admin/schema-version", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    version = client.get("/v1/admin/schema-version", headers=auth).json()
    assert version["current"] == version["head"]
    assert client.post("/v1/admin/migrate", headers=auth).json()["current"] == version["head"]
    audit = client.get("/v1/admin/audit", headers=auth).json()
    outcomes = [(a["action"], a["result"]) for a in audit]
    assert ("GET /v1/admin/schema-version", "denied") in outcomes
    assert ("POST /v1/admin/migrate", "allowed") in outcomes
    everything = json.dumps(audit) + client.get("/metrics").text + client.get("/readyz").text
    assert ADMIN_TOKEN not in everything
    assert ADMIN_TOKEN not in capsys.readouterr().err


def test_retention_deletes_old_rows(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    client.post("/v1/bars", json=_bars(3))  # T0 is 2024: older than 30 days
    _eventually(client, "/v1/bars", BARS_RANGE, 3)
    for nonsense in (1e-300, 0.5, 0, "30", True, -1):  # never "everything up to now"
        refused = client.post(
            "/v1/admin/retention", headers=auth, json={"table": "bars", "older_than_days": nonsense}
        )
        assert refused.status_code == 422, nonsense
        assert "older_than_days" in refused.text
    dry = client.post(
        "/v1/admin/retention",
        headers=auth,
        json={"table": "bars", "older_than_days": 30, "dry_run": True},
    )
    assert dry.status_code == 200
    assert (dry.json()["deleted"], dry.json()["dry_run"]) == (3, True)
    assert len(client.get("/v1/bars", params=BARS_RANGE).json()["items"]) == 3  # all kept
    result = client.post(
        "/v1/admin/retention", headers=auth, json={"table": "bars", "older_than_days": 30}
    )
    assert result.status_code == 200
    assert result.json()["deleted"] == 3
    assert client.get("/v1/bars", params=BARS_RANGE).json()["items"] == []
    bad = client.post(
        "/v1/admin/retention", headers=auth, json={"table": "users", "older_than_days": 1}
    )
    assert bad.status_code == 422


def test_refresh_aggregates_rolls_minutes_into_hours(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    client.post("/v1/bars", json=_bars(90))
    body = {
        "base": "1m",
        "targets": ["1h"],
        "start": T0.isoformat(),
        "end": (T0 + timedelta(hours=2)).isoformat(),
    }
    result = client.post("/v1/admin/aggregates/refresh", headers=auth, json=body)
    assert result.status_code == 200, result.text
    assert result.json() == [{"base": "1m", "target": "1h", "symbols": 1, "bars": 2}]
    hours = client.get(
        "/v1/bars",
        params=BARS_RANGE
        | {"timeframe": "1h", "start": "2024-01-02T14:00:00Z", "end": "2024-01-02T17:00:00Z"},
    ).json()["items"]
    assert [h["trade_count"] for h in hours] == [
        87 * 30,
        87 * 60,
    ]  # the 14:00 hour holds 14:30-14:59
    bad = client.post(
        "/v1/admin/aggregates/refresh", headers=auth, json=body | {"targets": ["90s"]}
    )
    assert bad.status_code == 422


def test_admin_routes_do_not_exist_without_a_token(settings: StoreSettings) -> None:
    settings = settings.model_copy(update={"admin_token": None})
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/admin/schema-version").status_code == 404


def test_query_validation_is_422(client: TestClient) -> None:
    assert client.get("/v1/bars", params=BARS_RANGE | {"timeframe": "7m"}).status_code == 422
    assert (
        client.get("/v1/bars", params=BARS_RANGE | {"start": "2024-01-02T14:30:00"}).status_code
        == 422
    )
    assert client.get("/v1/bars", params=BARS_RANGE | {"symbol": "has space"}).status_code == 422
    assert client.get("/v1/bars", params=BARS_RANGE | {"limit": 0}).status_code == 422


def test_everything_accepted_is_written_on_shutdown(
    settings: StoreSettings, tmp_path: Path
) -> None:
    with TestClient(create_app(settings)) as client:
        for i in range(20):
            client.post(
                "/v1/bars", json=[make_bar(start=T0 + timedelta(minutes=i)).model_dump(mode="json")]
            )
    with TestClient(create_app(settings)) as client:
        assert len(client.get("/v1/bars", params=BARS_RANGE).json()["items"]) == 20


def test_secret_database_url_never_leaks(tmp_path: Path) -> None:
    settings = StoreSettings(database_url=SecretStr("postgresql://u:canary-db-pass@127.0.0.1:1/x"))
    assert "canary-db-pass" not in repr(settings)
    assert "canary-db-pass" not in str(settings.database)


def test_feedback_stream_sends_events(settings: StoreSettings) -> None:
    settings = settings.model_copy(update={"heartbeat_interval": 0.05})
    with (
        TestClient(create_app(settings)) as client,
        client.stream("GET", "/v1/feedback/stream") as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        frames: list[FeedbackEvent] = []
        for line in stream.iter_lines():
            if line.startswith("data: "):
                frames.append(FeedbackEvent.model_validate_json(line.removeprefix("data: ")))
            if len(frames) == 2:
                break
    assert frames[0].coordinator_id == settings.coordinator_id
    assert frames[1].ts >= frames[0].ts  # the heartbeat keeps the stream alive


def test_paging_never_splits_sources_at_one_start(client: TestClient) -> None:
    bars = [
        make_bar(source=source, start=T0 + timedelta(minutes=i)).model_dump(mode="json")
        for i in range(7)
        for source in ("a", "b", "c")
    ]
    client.post("/v1/bars", json=bars)
    seen, start = [], T0.isoformat()
    while start is not None:
        page = client.get("/v1/bars", params=BARS_RANGE | {"start": start, "limit": 5}).json()
        seen.extend((b["source"], b["start"]) for b in page["items"])
        start = page["next_start"]
    assert len(seen) == len(set(seen)) == 21


def test_backfill_without_the_pipeline_installed_is_a_503_naming_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import market_data_store.backfill

    monkeypatch.setattr(market_data_store.backfill, "find_mdp", lambda: None)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"name": "x", "pipeline": {"source": {"type": "synthetic"}, "sink": {"type": "store"}}}
    answer = client.post("/v1/admin/backfills", headers=auth, json=body)
    assert answer.status_code == 503
    assert "pip install 'market-data-pipeline[store]'" in answer.json()["detail"]
    assert client.get("/v1/jobs").json() == []
    audit = client.get("/v1/admin/audit", headers=auth).json()
    assert ("POST /v1/admin/backfills", "failed") in [(a["action"], a["result"]) for a in audit]


def test_backfill_configs_point_default_store_sinks_at_the_service() -> None:
    from market_data_store.backfill import _targeted

    config = {
        "nodes": [
            {"id": "a", "type": "synthetic"},
            {"id": "own", "type": "store", "params": {"database": "sqlite:///x.db"}},
            {"id": "default", "type": "store"},
        ],
        "settings": {"database_url": "sqlite:///elsewhere.db"},
    }
    targeted = _targeted(config, "http://127.0.0.1:8000")
    assert targeted["nodes"][1]["params"] == {"database": "sqlite:///x.db"}
    assert targeted["nodes"][2]["params"] == {"url": "http://127.0.0.1:8000"}
    assert "settings" not in targeted
    assert "url" not in config["nodes"][2].get("params", {})  # the request is not mutated


def test_a_timeframe_error_does_not_echo_the_input(client: TestClient) -> None:
    probe = "<script>alert(1)</script>"
    response = client.get("/v1/bars", params=BARS_RANGE | {"timeframe": probe[:8]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "timeframe"]
    assert "<script" not in response.text
    latest = client.get("/v1/bars/latest", params={"timeframe": "9x"})
    assert latest.status_code == 422
    assert "9x" not in latest.text


def test_the_access_log_redacts_secrets_in_query_strings(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the values of the route's own query parameters are logged: a token under any
    other name (``?t=``, or bare) shows as ``***``, name and value."""
    from structlog.testing import capture_logs

    secret = "qs-canary-7d2e"
    with capture_logs() as logs:
        client.get("/v1/freshness", params={"token": secret, "api_key": secret})
        client.get(f"/v1/admin/audit?access_token={secret}&limit=3")
        client.get(f"/v1/bars/latest?timeframe=1m&t={secret}&{secret}")
        client.get(f"/no-such-route?t={secret}")
    requests = [entry for entry in logs if entry["event"] == "request"]
    assert [r["path"] for r in requests] == [
        "/v1/freshness", "/v1/admin/audit", "/v1/bars/latest", "/no-such-route"
    ]  # fmt: skip
    assert [r["query"] for r in requests] == ["***&***", "***&limit=3", "timeframe=1m&***&***",
                                              "***"]  # fmt: skip
    assert requests[0]["status"] == 200
    assert secret not in json.dumps(logs)
    assert secret not in capsys.readouterr().err


def test_probes_answered_well_log_at_debug(client: TestClient) -> None:
    """Orchestrators poll /readyz every few seconds: a healthy answer is DEBUG (not a line
    in the log at the default level), a failing one and every other request INFO."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        client.get("/healthz")
        client.get("/readyz")
        client.get("/metrics")
        client.get("/v1/freshness")
        client.get("/readyz/nope")
    levels = [(r["path"], r["log_level"]) for r in logs if r["event"] == "request"]
    assert levels == [("/healthz", "debug"), ("/readyz", "debug"), ("/metrics", "debug"),
                      ("/v1/freshness", "info"), ("/readyz/nope", "info")]  # fmt: skip


@contextlib.asynccontextmanager
async def _served(settings: StoreSettings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on ``store``, in this event loop (its background tasks too)."""
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
            yield client


@pytest.mark.asyncio
async def test_readyz_never_waits_for_the_database(settings: StoreSettings) -> None:
    """A database check that hangs: /readyz still answers, from the background checks (one
    check at a time, whatever the number of callers), and then reads unhealthy."""
    settings = settings.model_copy(update={"health_interval": 0.05})
    store, backend = make_gated(settings)
    hang = asyncio.Event()
    original = backend.ping
    hanging = 0
    most = 0

    async def ping() -> None:
        nonlocal hanging, most
        if not hang.is_set():
            await original()
            return
        hanging += 1
        most = max(most, hanging)
        try:
            await asyncio.Event().wait()
        finally:
            hanging -= 1

    backend.ping = ping  # type: ignore[method-assign]
    async with _served(settings, store) as client:
        assert (await client.get("/readyz")).status_code == 200
        hang.set()
        deadline = asyncio.get_running_loop().time() + scaled(30)
        while True:
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
            if all(a.status_code == 503 for a in answers):
                break
            assert asyncio.get_running_loop().time() < deadline, "never unhealthy"
            await asyncio.sleep(0.05)
    assert most == 1  # only the background check ever waited on the database
    database = next(c for c in answers[0].json()["components"] if c["name"] == "database")
    assert database["state"] == "unhealthy"
    error = database["details"]["error"]
    assert error == "TimeoutError" or error.startswith("no answer for"), error


@pytest.mark.asyncio
async def test_a_stalled_process_is_not_a_database_that_does_not_answer(
    settings: StoreSettings,
) -> None:
    """The whole process stops for longer than a database check's timeout (a busy machine):
    the checks came late, not the database's answers, and /readyz stays healthy."""
    settings = settings.model_copy(update={"health_interval": 0.05})
    store, backend = make_gated(settings)
    original, pinging, slow = backend.ping, 0, False

    async def ping() -> None:
        nonlocal pinging
        pinging += 1
        try:
            if slow:  # a database that answers in time, not at once
                await asyncio.sleep(0.5)
            await original()
        finally:
            pinging -= 1

    backend.ping = ping  # type: ignore[method-assign]
    async with _served(settings, store) as client:
        assert (await client.get("/readyz")).status_code == 200
        while pinging:  # noqa: ASYNC110 - to be between two checks, no await after
            await asyncio.sleep(0)
        slow = True
        time.sleep(3.5)  # noqa: ASYNC251 - the process stops: no check runs meanwhile
        answer = await client.get("/readyz")  # while the next check takes its 0.5 s
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "healthy"


def test_every_error_is_an_rfc_9457_problem(client: TestClient) -> None:
    from market_data_core import Problem

    answers = {
        404: client.get("/v1/nothing-here"),
        405: client.delete("/v1/bars"),
        401: client.get("/v1/admin/audit"),
        413: client.post("/v1/jobs", content=b"x" * (2 * 2**20), headers=JSON),
        415: client.post("/v1/trades", content=b"[]", headers={"Content-Type": "text/csv"}),
        422: client.get("/v1/bars", params=BARS_RANGE | {"limit": "many"}),
    }
    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/problem+json", status
        body = Problem.model_validate(answer.json())
        assert (body.status, body.type) == (status, "about:blank")
        assert body.title
        assert body.detail
    assert answers[422].json()["errors"][0]["loc"] == ["query", "limit"]
    assert answers[401].headers["WWW-Authenticate"] == "Bearer"


def test_the_openapi_spec_declares_problems_and_the_admin_bearer(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if path.startswith("/v1/admin"):
                assert operation["security"] == [{"bearerAuth": []}], path
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path != "/readyz":
                    assert list(response["content"]) == ["application/problem+json"], path


def test_swagger_ui_works_offline(client: TestClient) -> None:
    import re

    page = client.get("/docs")
    assert page.status_code == 200
    links = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    links += re.findall(r"""url: ?['"]([^'"]+)['"]""", page.text)
    assert links
    assert not [link for link in links if "://" in link or link.startswith("//")]
    for link in links:
        assert client.get(link).status_code == 200, link
    assert client.get("/redoc").status_code == 404  # CDN-only: off


def test_docs_run_under_a_content_security_policy_and_nothing_is_sniffed(
    client: TestClient,
) -> None:
    """/docs allows its own files and its one inline script (by a nonce new on each load);
    every answer, JSON, text, an error or the page, says nosniff."""
    import re

    page = client.get("/docs")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None
    scripts = re.findall(r"<script([^>]*)>", page.text)
    assert scripts
    assert all(f'nonce="{nonce.group(1)}"' in s or "src=" in s for s in scripts), scripts
    assert nonce.group(1) not in client.get("/docs").headers["Content-Security-Policy"]
    for path in ("/docs", "/healthz", "/metrics", "/openapi.json", "/no-such-page"):
        assert client.get(path).headers["X-Content-Type-Options"] == "nosniff", path

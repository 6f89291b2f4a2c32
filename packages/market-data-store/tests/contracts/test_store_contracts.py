"""What the store puts on the wire validates against core's committed JSON Schemas: its
``/readyz`` body (healthy, degraded under hard backpressure, unhealthy when the database
stops answering), the FeedbackEvents of its write coordinator (ok -> soft -> hard -> ok,
as HTTP consumers read them), the bars, trades and quotes its query routes return; and the
store declares no contract of its own: it uses core's models.

The schemas are those of ``$MD_CONTRACTS_DIR`` (default: the repository's docs/contracts),
so ``nox -s contracts`` runs this suite against the current schemas and against a previous
release's, with the store installed from its wheel."""

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from market_data_core.testing import T0, make_bar, make_quote, make_trade
from market_data_core.testing.contracts import ContractSchemas, redeclared_contracts
from market_data_core.testing.servers import scaled
from market_data_store.backends.base import Record, WriteResult
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.service import create_app
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

SCHEMAS = ContractSchemas.from_env(Path(__file__).resolve().parents[4] / "docs" / "contracts")
WINDOW = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}


class HeldBackend(SqliteBackend):
    """The real SQLite backend whose writes (and, when told, pings) wait while held."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes = threading.Event()
        self.writes.set()
        self.pings = threading.Event()
        self.pings.set()

    async def write(self, records: Sequence[Record]) -> WriteResult:
        while not self.writes.is_set():  # noqa: ASYNC110 - set from the test's thread
            await asyncio.sleep(0.005)
        return await super().write(records)

    async def ping(self) -> None:
        while not self.pings.is_set():  # noqa: ASYNC110 - set from the test's thread
            await asyncio.sleep(0.05)
        await super().ping()


@pytest.fixture
def settings(tmp_path: Path) -> StoreSettings:
    return StoreSettings(
        database_url=SecretStr(f"sqlite:///{tmp_path / 'store.db'}"),
        dead_letter_path=str(tmp_path / "dlq.ndjson"),
        flush_interval=0.01,
        heartbeat_interval=0.2,
        health_interval=0.05,
    )


@pytest.fixture
def client(settings: StoreSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _wait_for(what: str, condition: Any, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def test_readiness_of_a_healthy_store(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    SCHEMAS.assert_valid("HealthStatus", body)
    assert body["state"] == "healthy"
    names = {component["name"] for component in body["components"]}
    assert {"database", "write_queue", "workers", "circuit_breaker"} <= names
    for component in body["components"]:
        SCHEMAS.assert_valid("HealthComponent", component)
    # /healthz is liveness, the same contract: the same service and version, no components
    live = client.get("/healthz")
    assert live.status_code == 200
    SCHEMAS.assert_valid("HealthStatus", live.json())
    assert {k: live.json()[k] for k in ("service", "version", "state", "components")} == {
        "service": body["service"],
        "version": body["version"],
        "state": "healthy",
        "components": [],
    }


@pytest.fixture
def held(settings: StoreSettings) -> Iterator[tuple[TestClient, HeldBackend]]:
    """The service over a ``HeldBackend``: a 10-record queue, one worker, ack when queued."""
    settings = settings.model_copy(
        update={"queue_capacity": 10, "batch_size": 1, "workers": 1, "ack": "queued"}
    )
    backend = HeldBackend(settings.database)
    with TestClient(create_app(settings, store=Store(settings, backend=backend))) as client:
        try:
            yield client, backend
        finally:  # a failed check must not leave the shutdown's drain waiting forever
            backend.writes.set()
            backend.pings.set()


def _fill(client: TestClient) -> list[dict[str, Any]]:
    """Post one bar at a time until refused (429); the latest feedback after each post."""
    latest = []
    for minute in range(10):
        bar = make_bar(start=T0 + timedelta(minutes=minute)).model_dump(mode="json")
        if client.post("/v1/bars", json=[bar]).status_code == 429:
            break
        latest.append(client.get("/v1/feedback").json())
    return latest


def test_readiness_degraded_then_unhealthy_then_healthy(
    held: tuple[TestClient, HeldBackend],
) -> None:
    client, backend = held
    backend.writes.clear()  # the database stops taking writes: the queue fills
    _fill(client)
    degraded = _wait_for(
        "degraded readiness",
        lambda: (r := client.get("/readyz")).json()["state"] == "degraded" and r,
    )
    assert degraded.status_code == 200  # still serving reads: usable
    SCHEMAS.assert_valid("HealthStatus", degraded.json())
    backend.pings.clear()  # and no longer answers at all (the background check sees it)
    unhealthy = _wait_for(
        "unhealthy readiness", lambda: (r := client.get("/readyz")).status_code == 503 and r
    )
    SCHEMAS.assert_valid("HealthStatus", unhealthy.json())
    database = {c["name"]: c for c in unhealthy.json()["components"]}["database"]
    assert database["state"] == "unhealthy"
    error = database["details"]["error"]
    assert error == "TimeoutError" or error.startswith("no answer for"), error
    backend.pings.set()
    backend.writes.set()
    healthy = _wait_for(
        "healthy readiness",
        lambda: (r := client.get("/readyz")).json()["state"] == "healthy" and r,
    )
    SCHEMAS.assert_valid("HealthStatus", healthy.json())


def test_feedback_events_through_soft_and_hard_and_back_to_ok(
    held: tuple[TestClient, HeldBackend], settings: StoreSettings
) -> None:
    client, backend = held
    backend.writes.clear()
    latest = _fill(client)
    _wait_for("hard backpressure", lambda: client.get("/v1/feedback").json()["level"] == "hard")
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + scaled(30)  # heartbeats every 0.2 s keep lines coming
    with client.stream("GET", "/v1/feedback/stream") as stream:
        backend.writes.set()  # the queue drains
        for line in stream.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line.removeprefix("data: ")))
            if (frames and frames[-1]["level"] == "ok") or time.monotonic() > deadline:
                break
    events = [*latest, *frames, client.get("/v1/feedback").json()]  # in the order read
    for event in events:
        SCHEMAS.assert_valid("FeedbackEvent", event)
    levels = [event["level"] for event in events]
    assert {"soft", "hard"} <= set(levels)
    assert levels[-1] == "ok"
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(seqs), "each change carries a higher seq, a heartbeat the same"
    assert all(event["coordinator_id"] == settings.coordinator_id for event in events)


def test_bars_trades_and_quotes_from_the_query_routes(client: TestClient) -> None:
    bars = [
        make_bar(start=T0 + timedelta(minutes=i), trade_count=None if i % 2 else i, vwap=None)
        for i in range(12)
    ]
    trades = [make_trade(ts=T0 + timedelta(seconds=i), trade_id=str(i)) for i in range(3)]
    for table, records in (("bars", bars), ("trades", trades), ("quotes", [make_quote()])):
        answer = client.post(f"/v1/{table}", json=[r.model_dump(mode="json") for r in records])
        assert answer.status_code == 202, answer.text
    page = client.get("/v1/bars", params={"symbol": "AAPL", "timeframe": "1m", **WINDOW}).json()
    latest = client.get("/v1/bars/latest", params={"timeframe": "1m"}).json()
    assert len(page["items"]) == 12
    assert len(latest) == 1
    for bar in page["items"] + latest:
        SCHEMAS.assert_valid("Bar", bar)
    got_trades = client.get("/v1/trades", params={"symbol": "AAPL", **WINDOW}).json()
    got_quotes = client.get("/v1/quotes", params={"symbol": "AAPL", **WINDOW}).json()
    assert (len(got_trades), len(got_quotes)) == (3, 1)
    for trade in got_trades:
        SCHEMAS.assert_valid("Trade", trade)
    for quote in got_quotes:
        SCHEMAS.assert_valid("Quote", quote)


def test_the_store_does_not_redeclare_core_contracts(client: TestClient) -> None:
    """Its source (as installed) and every module of it that serving imported."""
    assert client.get("/readyz").status_code == 200
    assert redeclared_contracts("market_data_store") == []

"""Ingest at the edge: what the database could not keep is refused before it is queued,
oversized or malformed bodies are refused cheaply and say why, and a 202 means stored."""

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from market_data_core.testing import T0, make_bar, make_quote, make_signal, make_trade
from market_data_core.testing.servers import scaled
from market_data_store.retry import BreakerState
from market_data_store.service import create_app
from market_data_store.service.ingest import MAX_ERRORS
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

from .conftest import ADMIN_TOKEN  # noqa: TID252 - test helpers

JSON = {"Content-Type": "application/json"}
WINDOW = {
    "symbol": "AAPL",
    "start": "0001-01-01T00:00:00Z",
    "end": "9999-12-31T23:59:59Z",
}


def _trades(n: int, **overrides: Any) -> list[dict[str, Any]]:
    return [
        make_trade(ts=T0 + timedelta(seconds=i), trade_id=str(i)).model_dump(mode="json")
        | overrides
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("table", "record", "field"),
    [
        ("trades", make_trade().model_dump(mode="json") | {"exchange": "XN\x00AS"}, "exchange"),
        ("trades", make_trade().model_dump(mode="json") | {"conditions": ["\x00"]}, "conditions"),
        ("trades", make_trade().model_dump(mode="json") | {"trade_id": "1\x002"}, "trade_id"),
        ("quotes", make_quote().model_dump(mode="json") | {"exchange": "IEX\x00"}, "exchange"),
        (
            "signals",
            make_signal().model_dump(mode="json") | {"metadata": {"k": "\x00"}},
            "metadata",
        ),
    ],
)
def test_text_the_database_cannot_keep_is_422_at_the_edge(
    client: TestClient, table: str, record: dict[str, Any], field: str
) -> None:
    good = {"trades": _trades(1)[0], "quotes": make_quote().model_dump(mode="json"),
            "signals": make_signal().model_dump(mode="json")}[table]  # fmt: skip
    response = client.post(f"/v1/{table}", json=[good, record])
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["loc"][:2] == [1, field]
    assert "NUL character" in error["msg"]
    assert client.get("/metrics").text.count(f'mds_ingest_records_total{{table="{table}"}}') == 0


@pytest.mark.parametrize(
    "ts",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:00:00-05:00",
    ],
)
def test_timestamps_at_the_range_edges_are_422_never_stored(client: TestClient, ts: str) -> None:
    response = client.post("/v1/trades", json=_trades(1, ts=ts))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == [0, "ts"]
    assert (
        "1678-01-01" in response.json()["errors"][0]["msg"]
        or "2262-01-01" in response.json()["errors"][0]["msg"]
    )
    bar = make_bar().model_dump(mode="json") | {"start": ts}
    assert client.post("/v1/bars", json=[bar]).status_code == 422


def test_a_query_range_from_year_1_to_9999_means_everything(client: TestClient) -> None:
    assert client.post("/v1/trades", json=_trades(3)).status_code == 202
    edges = WINDOW | {"start": "0001-01-01T00:00:00+01:00", "end": "9999-12-31T23:00:00-05:00"}
    for window in (WINDOW, edges):
        response = client.get("/v1/trades", params=window)
        assert response.status_code == 200, response.text
        assert len(response.json()) == 3
    latest = client.get("/v1/bars/latest", params={"timeframe": "1m"})
    assert latest.status_code == 200


def test_job_heartbeats_at_the_range_edges_are_422(client: TestClient) -> None:
    run = client.post("/v1/jobs", json={"job_name": "edge", "provider": "replay"}).json()
    beat = client.post(
        f"/v1/jobs/{run['id']}/heartbeat",
        json={"rows_written": 1, "min_ts": "0001-01-01T00:00:00+01:00"},
    )
    assert beat.status_code == 422, beat.text
    assert beat.json()["errors"][0]["loc"] == ["body", "min_ts"]
    assert client.get("/v1/jobs").status_code == 200  # the run list stays readable


@pytest.mark.parametrize(
    "body",
    [{"min_ts": 0}, {"max_ts": 1_700_000_000.5}, {"min_ts": "1700000000"}, {"max_ts": True},
     {"rows_written": "5"}, {"rows_failed": 2.0}, {"rows_written": True}],
)  # fmt: skip
def test_a_heartbeat_takes_times_as_text_and_counts_as_integers(
    client: TestClient, body: dict[str, Any]
) -> None:
    """A number is not a time (it would be read as seconds since 1970) and a string is not
    a count: 422 naming the field, the run untouched."""
    run = client.post("/v1/jobs", json={"job_name": "strict", "provider": "replay"}).json()
    beat = client.post(f"/v1/jobs/{run['id']}/heartbeat", json=body)
    assert beat.status_code == 422, beat.text
    assert beat.json()["errors"][0]["loc"] == ["body", next(iter(body))]
    fine = {"rows_written": 5, "min_ts": "2024-01-02T14:30:00Z"}
    assert client.post(f"/v1/jobs/{run['id']}/heartbeat", json=fine).status_code == 200
    stored = client.get(f"/v1/jobs/{run['id']}").json()
    assert (stored["rows_written"], stored["min_ts"][:19]) == (5, "2024-01-02T14:30:00")


def test_a_query_bound_is_a_time_not_a_number(client: TestClient) -> None:
    for start in ("0", "1700000000", "1.7e9"):
        answer = client.get(
            "/v1/trades", params={"symbol": "AAPL", "start": start, "end": "2030-01-01T00:00:00Z"}
        )
        assert answer.status_code == 422, start
        assert "RFC 3339" in answer.text


def test_numbers_are_strict_json_numbers(client: TestClient) -> None:
    response = client.post("/v1/trades", json=_trades(2) + _trades(1, price="10", size=True))
    assert response.status_code == 422
    locs = [error["loc"] for error in response.json()["errors"]]
    assert [2, "price"] in locs
    assert [2, "size"] in locs


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_by_its_type_is_415(
    client: TestClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = json.dumps(_trades(1)).encode()
    response = client.post("/v1/trades", content=body, headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert client.post("/v1/trades", content=body, headers=JSON).status_code == 202
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert client.post("/v1/trades", content=body, headers=charset).status_code == 202


def test_an_oversized_batch_is_413_without_validating_it(client: TestClient) -> None:
    """max_batch is 100 here: 101 broken records are refused for their number alone."""
    broken = [{"symbol": "a b", "ts": "x", "price": "y"}] * 101
    response = client.post("/v1/trades", json=broken)
    assert response.status_code == 413
    assert "at most 100 records" in response.json()["detail"]
    assert response.json()["errors"] == []


def test_the_error_list_is_capped(settings: StoreSettings) -> None:
    """2 MB of broken records: one bounded 422, and the service keeps answering."""
    settings = settings.model_copy(update={"max_batch": 10_000, "max_body_bytes": 4 * 2**20})
    broken = {"symbol": "a b", "ts": "x", "price": "y", "size": "z", "exchange": "",
              "conditions": [""] * 32, "side": "q", "trade_id": ""}  # fmt: skip
    body = json.dumps([broken] * 9000).encode()
    assert len(body) > 2 * 2**20
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/trades", content=body, headers=JSON)
        assert response.status_code == 422
        problem = response.json()
        assert len(problem["errors"]) == MAX_ERRORS
        total = int(problem["detail"].split(": ")[1].split(" ")[0])
        assert total > 9000 * 32
        assert len(response.content) < 20_000
        assert client.get("/healthz").status_code == 200


@pytest.mark.asyncio
async def test_healthz_answers_while_a_large_body_is_validated(settings: StoreSettings) -> None:
    """Validation of a large body runs in a thread: /healthz is answered meanwhile (it
    would wait behind the whole validation if that ran on the event loop)."""
    settings = settings.model_copy(update={"max_batch": 200_000, "max_body_bytes": 64 * 2**20})
    body = json.dumps(_trades(1) * 120_000 + _trades(1, price="bad")).encode()  # all validated
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
            ingest = asyncio.create_task(client.post("/v1/trades", content=body, headers=JSON))
            answered_first = 0
            while not ingest.done():
                live = await client.get("/healthz")
                assert live.status_code == 200
                answered_first += not ingest.done()
            assert (await ingest).status_code == 422
    # on the event loop, at most the requests before the validation began would be answered
    assert answered_first >= 15, answered_first


def test_idempotency_keys_belong_to_their_route(client: TestClient) -> None:
    headers = {"Idempotency-Key": "shared-key-1"}
    bars = [make_bar().model_dump(mode="json")]
    assert client.post("/v1/bars", json=bars, headers=headers).status_code == 202
    trades = client.post("/v1/trades", json=_trades(2), headers=headers)
    assert trades.status_code == 202, trades.text
    assert "Idempotent-Replay" not in trades.headers
    assert trades.json()["table"] == "trades"


@pytest.mark.asyncio
async def test_ingest_answers_503_at_once_while_the_breaker_is_open(
    settings: StoreSettings,
) -> None:
    # no background check during the test: it would half-open the breaker (SQLite is fine)
    settings = settings.model_copy(update={"breaker_reset_seconds": 3600, "health_interval": 60})
    store = Store(settings)
    app = create_app(settings, store=store)
    async with app.router.lifespan_context(app):
        breaker = store.coordinator.breaker
        for _ in range(breaker.failure_threshold):
            breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
            response = await asyncio.wait_for(
                client.post("/v1/trades", json=_trades(2)), scaled(30)
            )
    assert response.status_code == 503
    assert "circuit breaker open" in response.json()["detail"]
    assert int(response.headers["Retry-After"]) >= 1
    assert store.coordinator.stats().accepted == 0


def test_an_unwritable_dead_letter_file_makes_the_store_unready(
    settings: StoreSettings, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the dead-letter directory should be")
    settings = settings.model_copy(update={"dead_letter_path": str(blocker / "dlq.ndjson")})
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        component = next(c for c in ready.json()["components"] if c["name"] == "dead_letters")
        assert component["state"] == "unhealthy"
        assert str(blocker) in component["details"]["error"]
        # durable acks never depend on the dead-letter file: still taken, and stored
        assert client.post("/v1/trades", json=_trades(2)).status_code == 202
    queued = settings.model_copy(update={"ack": "queued"})
    with TestClient(create_app(queued)) as client:
        refused = client.post("/v1/trades", json=_trades(2))
        assert refused.status_code == 503
        assert "dead-letter file cannot be written" in refused.json()["detail"]


@pytest.mark.asyncio
@pytest.mark.parametrize("names_a_value", [True, False], ids=["invalid-value", "no-value-named"])
async def test_a_request_the_database_refuses_in_part_is_never_acknowledged(
    settings: StoreSettings, names_a_value: bool
) -> None:
    """Past the edge, a record the database refuses: its request answers 422 naming it
    (the rest of that request is stored), the requests sharing its batch answer 202. Also
    when the error names no value (found by bisecting the batch), round after round: the
    breaker never opens, so no other client ever gets a 503."""
    from market_data_store.backends.sqlite import SqliteBackend
    from market_data_store.exceptions import InvalidValueError, PermanentBackendError

    def refusal() -> Exception:
        if names_a_value:
            return InvalidValueError("refused", reason="the database refuses 666")
        return PermanentBackendError("the database refuses 666")

    class Refusing(SqliteBackend):
        async def write(self, records: Any) -> Any:
            if any(getattr(r, "price", None) == 666.0 for r in records):
                raise refusal()
            return await super().write(records)

    settings = settings.model_copy(update={"flush_interval": 0.2, "batch_size": 1000})
    store = Store(settings, backend=Refusing(settings.database))
    app = create_app(settings, store=store)
    rounds = 7  # more than the breaker's threshold
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
            for round_ in range(rounds):
                bodies = [
                    [make_trade(symbol=f"W{n}", ts=T0 + timedelta(seconds=i + 100 * round_),
                                price=600.0 + i + n * 100).model_dump(mode="json")
                     for i in range(10)]
                    for n in range(5)
                ]  # fmt: skip  # prices 600.. + 100 n: none is 666 until it is set
                bodies[2][6]["price"] = 666.0
                answers = await asyncio.gather(*(client.post("/v1/trades", json=b) for b in bodies))
                assert [a.status_code for a in answers] == [202, 202, 422, 202, 202]
                refused = answers[2].json()
                assert refused["errors"] == [
                    {"loc": [6], "msg": "the database refuses 666", "type": "refused_by_database"}
                ]
                assert "9 were stored" in refused["detail"]
        assert store.coordinator.breaker.state is BreakerState.CLOSED
        stored = [
            trade
            for n in range(5)
            for trade in await store.query_trades(f"W{n}", T0, T0 + timedelta(days=1))
        ]
    assert len(stored) == rounds * 49
    assert 666.0 not in {t.price for t in stored}
    assert store.coordinator.stats().refused == rounds


def test_an_aggregate_refresh_over_the_whole_time_range_works(client: TestClient) -> None:
    from .conftest import ADMIN_TOKEN  # noqa: TID252 - test helpers

    body = {"base": "1m", "targets": ["1h"], "start": "0001-01-01T00:00:00+01:00",
            "end": "9999-12-31T23:00:00-05:00"}  # fmt: skip
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = client.post("/v1/admin/aggregates/refresh", json=body, headers=auth)
    assert response.status_code == 200, response.text


def test_a_key_twice_in_a_json_object_is_422_naming_where(client: TestClient) -> None:
    """Which of two values a parser keeps is a guess (a proxy may have read the other):
    refused, naming the item and the key; nothing of the batch stored."""
    items = [json.dumps(t) for t in _trades(4)]
    items[2] = items[2][:-1] + ', "price": 1.0}'
    answer = client.post("/v1/trades", content=f"[{','.join(items)}]", headers=JSON)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == [2, "price"]
    assert "duplicate key 'price'" in answer.json()["detail"]
    stored = client.get("/v1/trades", params={"symbol": "AAPL", "start": T0.isoformat(),
                                              "end": (T0 + timedelta(days=1)).isoformat()})  # fmt: skip
    assert stored.json() == []
    retention = client.post(
        "/v1/admin/retention",
        content='{"table": "bars", "table": "trades", "older_than_days": 30}',
        headers={**JSON, "Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert retention.status_code == 422
    assert "duplicate key 'table'" in retention.text


@pytest.mark.parametrize("charset", ["latin-1", "iso-8859-1", "utf-16", '"cp1252"'])
def test_json_declared_in_another_charset_is_415(client: TestClient, charset: str) -> None:
    body = json.dumps(_trades(1)).encode()
    for path, headers in (
        ("/v1/trades", {}),
        ("/v1/admin/retention", {"Authorization": f"Bearer {ADMIN_TOKEN}"}),
    ):
        answer = client.post(
            path, content=body, headers={"Content-Type": f"application/json; charset={charset}",
                                         **headers},
        )  # fmt: skip
        assert answer.status_code == 415, (path, answer.text)
        assert "UTF-8" in answer.json()["detail"]
    utf8 = {"Content-Type": "application/json; charset=UTF-8"}
    assert client.post("/v1/trades", content=body, headers=utf8).status_code == 202

"""Versions, history and nanoseconds through the HTTP service (``mds serve``'s app on
SQLite): JSON and Arrow ingest keep every tick exactly, reads take ``as_known_at``,
``/v1/revisions`` says what was revised, when and why; a read older than the history kept
is a 422 naming the field."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.csv as pacsv
from fastapi.testclient import TestClient

from market_data_core import from_ns, to_ns
from market_data_core.columns import TIMESTAMP
from market_data_core.testing import AS_OF, T0, make_bar, make_quote, make_trade

NANOS = to_ns(T0) + 123_456_789
RANGE = {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}


def _arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_nanoseconds_round_trip_through_json_and_arrow(client: TestClient) -> None:
    body = [{"symbol": "A", "ts": "2024-01-02T14:30:00.123456789Z", "price": 1, "size": 2}]
    assert client.post("/v1/trades", json=body).status_code == 202
    table = pa.table(
        {"symbol": ["B"], "ts": pa.array([NANOS + 1], TIMESTAMP), "price": [1.0], "size": [1.0]}
    )
    arrow = {"content-type": "application/vnd.apache.arrow.stream"}
    assert client.post("/v1/trades", content=_arrow(table), headers=arrow).status_code == 202
    (a,) = client.get("/v1/trades", params={"symbol": "A", **RANGE}).json()
    assert a["ts"] == "2024-01-02T14:30:00.123456789Z"
    got = client.get("/v1/trades", params={"symbol": "B", "format": "arrow", **RANGE})
    stored = pa.ipc.open_stream(got.content).read_all()
    assert stored.column("ts").cast(pa.int64()).to_pylist() == [NANOS + 1]
    csv = client.get("/v1/trades", params={"symbol": "A", "format": "csv", **RANGE})
    parsed = pacsv.read_csv(io.BytesIO(csv.content))
    assert parsed.column("ts").cast(pa.timestamp("ns", "UTC")).cast(pa.int64()).to_pylist() == [
        NANOS
    ]


def test_more_than_nine_fractional_digits_is_refused_naming_the_field(client: TestClient) -> None:
    body = [{"symbol": "A", "ts": "2024-01-02T14:30:00.1234567891Z", "price": 1, "size": 2}]
    answer = client.post("/v1/trades", json=body)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"][-2:] == [0, "ts"]


def test_quotes_sharing_a_microsecond_or_a_nanosecond_are_all_kept(client: TestClient) -> None:
    same = [make_quote(ordinal=None, bid=100.0 + i, ask=101.0 + i) for i in range(3)]
    body = [q.model_dump(mode="json") for q in same]
    body += [{**body[0], "ts": "2024-01-02T14:30:00.000000001Z"}]
    assert client.post("/v1/quotes", json=body).status_code == 202
    assert client.post("/v1/quotes", json=body).status_code == 202  # a retry changes nothing
    stored = client.get("/v1/quotes", params={"symbol": "AAPL", **RANGE}).json()
    assert len(stored) == 4
    assert [q["ordinal"] for q in stored] == [0, 1, 2, 0]


def test_the_newest_version_wins_and_reads_as_known_at_see_the_past(client: TestClient) -> None:
    first = make_bar(close=185.5, revision=1)
    client.post("/v1/bars", json=[first.model_dump(mode="json")])
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    second = make_bar(close=185.0, revision=2, reason="late")
    stale = make_bar(close=185.9, revision=0)
    for bar in (second, stale):  # the stale one arrives last: it changes nothing
        assert client.post("/v1/bars", json=[bar.model_dump(mode="json")]).status_code == 202
    params = {"symbol": "AAPL", "timeframe": "1m", **RANGE}
    assert client.get("/v1/bars", params=params).json()["items"][0]["close"] == 185.0
    past = client.get("/v1/bars", params={**params, "as_known_at": between.isoformat()})
    assert past.json()["items"][0]["close"] == 185.5
    arrow = client.get(
        "/v1/bars", params={**params, "as_known_at": between.isoformat(), "format": "arrow"}
    )
    assert pa.ipc.open_stream(arrow.content).read_all().column("close").to_pylist() == [185.5]
    revisions = client.get("/v1/revisions/bars", params={"symbol": "AAPL", **RANGE}).json()
    assert [(r["close"], r["revision"], r["reason"]) for r in revisions] == [
        (185.5, 1, None),
        (185.0, 2, "late"),
    ]
    assert revisions[0]["superseded_at"] == revisions[1]["ingested_at"]
    assert revisions[1]["superseded_at"] is None


def test_a_read_older_than_the_history_kept_is_a_422(client: TestClient) -> None:
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    params = {"symbol": "AAPL", "timeframe": "1m", "as_known_at": old, **RANGE}
    answer = client.get("/v1/bars", params=params)
    assert answer.status_code == 422
    assert "MDS_HISTORY_RETENTION_DAYS" in answer.json()["detail"]
    assert answer.json()["errors"][0]["loc"] == ["query", "as_known_at"]


def test_a_record_without_a_version_is_versioned_when_received(client: TestClient) -> None:
    before = time.time_ns()
    body = [make_trade(as_of=None).model_dump(mode="json")]
    client.post("/v1/trades", json=body)
    (stored,) = client.get("/v1/trades", params={"symbol": "AAPL", **RANGE}).json()
    received = to_ns(datetime.fromisoformat(stored["as_of"]))
    assert before <= received <= time.time_ns()
    # a correction sent later, without a version either, is newer: it replaces
    client.post("/v1/trades", json=[{**body[0], "price": 1.0}])
    (corrected,) = client.get("/v1/trades", params={"symbol": "AAPL", **RANGE}).json()
    assert corrected["price"] == 1.0
    assert from_ns(0) < AS_OF  # the factories' version is far older than now


def test_version_conflicts_are_counted_in_the_metrics(client: TestClient) -> None:
    one, other = make_bar(close=185.1), make_bar(close=185.2)  # same key and version
    client.post("/v1/bars", json=[one.model_dump(mode="json")])
    client.post("/v1/bars", json=[other.model_dump(mode="json")])
    client.post("/v1/bars", json=[one.model_dump(mode="json")])  # arrives last, still loses
    params = {"symbol": "AAPL", "timeframe": "1m", **RANGE}
    assert client.get("/v1/bars", params=params).json()["items"][0]["close"] == 185.2
    metrics = client.get("/metrics").text
    assert "mds_version_conflicts_total 2.0" in metrics


def test_revisions_of_ticks_ignore_what_only_bars_have(client: TestClient) -> None:
    client.post("/v1/trades", json=[make_trade().model_dump(mode="json")])
    params = {"symbol": "AAPL", "timeframe": "1m", "source": "x", **RANGE}
    answer = client.get("/v1/revisions/trades", params=params)
    assert answer.status_code == 200
    assert len(answer.json()) == 1

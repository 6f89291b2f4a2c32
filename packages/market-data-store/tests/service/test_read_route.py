"""``GET /v1/read/{kind}``: the service streams bars, trades and quotes of many symbols
whole (no page cap) as Arrow, Parquet or CSV, equal to a direct read of its database; the
read API over HTTP (``connect("http://...")``) uses it; what it cannot answer is a 422
naming the field, never a 5xx."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from market_data_core import from_ns, to_ns
from market_data_core.columns import TIMESTAMP
from market_data_core.testing import T0
from market_data_store import connect
from market_data_store.read import Reader
from market_data_store.read.sources import HttpSource
from market_data_store.settings import StoreSettings

ROWS = 12_345  # above the paged routes' 10,000
SYMBOLS = ["AAPL", "BTC/USDT", "MSFT"]


@pytest.fixture
def settings(settings: StoreSettings) -> StoreSettings:
    """The service's settings with room for 4,000-row Arrow bodies and batches."""
    return settings.model_copy(update={"max_body_bytes": 8 << 20, "max_batch": 5000})


def _arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _write_trades(client: TestClient) -> pa.Table:
    base = to_ns(T0)
    table = pa.table({
        "symbol": [SYMBOLS[i % 3] for i in range(ROWS)],
        "ts": pa.array([base + i * 1_001 for i in range(ROWS)], TIMESTAMP),  # nanoseconds apart
        "price": [100.0 + i / 100 for i in range(ROWS)],
        "size": [1.0 + i % 7 for i in range(ROWS)],
    })  # fmt: skip
    headers = {"content-type": "application/vnd.apache.arrow.stream"}
    for start in range(0, ROWS, 4000):
        body = _arrow(table.slice(start, 4000))
        assert client.post("/v1/trades", content=body, headers=headers).status_code == 202
    deadline = time.monotonic() + 30
    while _count(client) < ROWS:
        assert time.monotonic() < deadline, "the writes were not stored in 30 s"
        time.sleep(0.05)
    return table


def _count(client: TestClient) -> int:
    response = client.get("/v1/read/trades")
    assert response.status_code == 200, response.text
    return pa.ipc.open_stream(response.content).read_all().num_rows


def test_trades_of_many_symbols_stream_whole_in_every_format(
    client: TestClient, settings: StoreSettings
) -> None:
    written = _write_trades(client)
    params = [("symbol", "AAPL"), ("symbol", "BTC/USDT")]
    arrow = client.get("/v1/read/trades", params=params)
    assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(arrow.content).read_all()
    expected = [s for s in written.column("symbol").to_pylist() if s != "MSFT"]
    assert table.num_rows == len(expected) > 8000
    direct = connect(settings.database.secret()).trades(["AAPL", "BTC/USDT"]).to_arrow()
    assert table.equals(direct)

    parquet = client.get("/v1/read/trades", params=[*params, ("format", "parquet")])
    assert pq.read_table(io.BytesIO(parquet.content)).equals(table)
    csv = client.get("/v1/read/trades", params=[*params, ("format", "csv")])
    assert csv.headers["content-type"].startswith("text/csv")
    read_back = pacsv.read_csv(io.BytesIO(csv.content))
    assert read_back.num_rows == table.num_rows
    assert read_back.column("price").to_pylist() == table.column("price").to_pylist()


def test_a_range_is_exact_to_the_nanosecond_over_http(client: TestClient) -> None:
    written = _write_trades(client)
    times = written.column("ts").cast(pa.int64()).to_pylist()
    first, last = times[100], times[200] + 1  # [t100, t200]
    params = {"start": from_ns(first).isoformat(), "end": from_ns(last).isoformat()}
    table = pa.ipc.open_stream(client.get("/v1/read/trades", params=params).content).read_all()
    assert sorted(table.column("ts").cast(pa.int64()).to_pylist()) == times[100:201]


def test_the_read_api_over_http_equals_the_direct_read(
    client: TestClient, settings: StoreSettings
) -> None:
    _write_trades(client)
    over_http = Reader(HttpSource("http://testserver", client=client))
    direct = connect(settings.database.secret())
    start, end = T0 + timedelta(microseconds=7), T0 + timedelta(seconds=5)
    got = over_http.trades(["MSFT", "AAPL"], start, end).to_arrow()
    assert got.num_rows > 0
    assert got.equals(direct.trades(["MSFT", "AAPL"], start, end).to_arrow())
    frame = over_http.trades("BTC/USDT").to_pandas()
    assert set(frame["symbol"]) == {"BTC/USDT"}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/read/signals", {}, "kind"),
        ("/v1/read/bars", {}, "timeframe"),
        ("/v1/read/bars", {"timeframe": "7x"}, "timeframe"),
        ("/v1/read/trades", {"symbol": "bad symbol!"}, "symbol"),
        ("/v1/read/trades", {"start": "2024-02-01T00:00Z", "end": "2024-01-01T00:00Z"}, "start"),
        ("/v1/read/trades", {"start": "1700000000"}, "start"),
        ("/v1/read/trades", {"end": "2024-01-01T00:00"}, "end"),  # no offset
        ("/v1/read/trades", {"as_known_at": "2001-01-01T00:00Z"}, "as_known_at"),
        ("/v1/read/trades", {"format": "xlsx"}, "format"),
    ],
)
def test_what_the_route_cannot_answer_is_a_422_naming_it(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.text


def test_the_read_api_over_http_names_the_refusal(client: TestClient) -> None:
    over_http = Reader(HttpSource("http://testserver", client=client))
    with pytest.raises(Exception, match="answered 422"):
        over_http.trades(as_known_at="2001-01-01T00:00Z").to_arrow()

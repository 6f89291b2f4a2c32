"""Arrow IPC ingest: tables go in as columns, bad ones get a 4xx naming row and column, and
``mds serve`` killed with SIGKILL mid-ingest loses no acknowledged row (real PostgreSQL,
real process)."""

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from market_data_core.ipc import measure
from market_data_core.testing import T0, make_trade
from market_data_core.testing.servers import scaled
from market_data_store.client import ARROW_STREAM, StoreClient, StoreClientError
from market_data_store.columnar import Kind, from_models
from market_data_store.migrate import upgrade
from market_data_store.service import create_app
from market_data_store.service import ingest as ingest_module
from market_data_store.settings import StoreSettings
from market_data_store.testing import PostgresServer, StoreService

END = (T0 + timedelta(days=1)).isoformat()


def _ipc(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _trades(batch: int, rows: int) -> pa.Table:
    base = T0 + timedelta(hours=batch)
    models = [
        make_trade(ts=base + timedelta(milliseconds=i), trade_id=f"b{batch}-{i}")
        for i in range(rows)
    ]
    return from_models(models, Kind.TRADES)


def test_an_arrow_stream_is_stored_and_reads_back(client: TestClient) -> None:
    table = _trades(0, 50)
    answer = client.post("/v1/trades", content=_ipc(table), headers={"Content-Type": ARROW_STREAM})
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 50
    stored = client.get(
        "/v1/trades", params={"symbol": "AAPL", "start": T0.isoformat(), "end": END, "limit": 100}
    ).json()
    assert [t["trade_id"] for t in stored] == [f"b0-{i}" for i in range(50)]


def test_a_bad_arrow_table_is_422_naming_row_and_column(client: TestClient) -> None:
    table = _trades(0, 5)
    sizes = pa.array([1.0, 1.0, 1.0, -4.0, 1.0])
    bad = table.set_column(table.schema.get_field_index("size"), "size", sizes)
    answer = client.post("/v1/trades", content=_ipc(bad), headers={"Content-Type": ARROW_STREAM})
    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"loc": [3, "size"], "msg": "is negative (-4.0)", "type": "value_error"}
    ]
    garbage = client.post(
        "/v1/trades", content=b"not arrow", headers={"Content-Type": ARROW_STREAM}
    )
    assert garbage.status_code == 422
    assert "not a valid Arrow IPC stream" in garbage.json()["detail"]
    quotes = client.post("/v1/quotes", content=_ipc(table), headers={"Content-Type": ARROW_STREAM})
    assert quotes.status_code == 422
    assert "missing required column" in quotes.json()["detail"]
    assert (
        client.get(
            "/v1/trades", params={"symbol": "AAPL", "start": T0.isoformat(), "end": END}
        ).json()
        == []
    )


def test_a_table_past_max_batch_is_413(client: TestClient) -> None:
    limit = client.app.state.service.settings.max_batch  # type: ignore[attr-defined]
    answer = client.post(
        "/v1/trades", content=_ipc(_trades(0, limit + 1)), headers={"Content-Type": ARROW_STREAM}
    )
    assert answer.status_code == 413


def test_a_compression_bomb_is_413_before_anything_is_decompressed(client: TestClient) -> None:
    """Two million rows of zstd in a few KB: refused from its metadata (413 naming max_batch);
    the service's Arrow memory never grows by the 16 MB the body would decode to (peak)."""
    rows = 2_000_000
    bomb = _ipc(pa.table({"ts": pa.array(np.zeros(rows, dtype=np.int64))}), "zstd")
    assert len(bomb) < 64 * 1024
    default = pa.default_memory_pool()
    watched = pa.proxy_memory_pool(default)  # its own peak, from now on
    pa.set_memory_pool(watched)
    try:
        answer = client.post("/v1/trades", content=bomb, headers={"Content-Type": ARROW_STREAM})
    finally:
        pa.set_memory_pool(default)
    assert answer.status_code == 413
    assert "max_batch" in answer.json()["detail"]
    assert watched.max_memory() < 4 * 1024 * 1024


def test_a_body_decoding_past_max_decoded_bytes_is_413(settings: StoreSettings) -> None:
    """One row, a 4 MB text: the rows pass max_batch, the decoded bytes do not."""
    settings = settings.model_copy(update={"max_decoded_bytes": 1024 * 1024})
    body = _ipc(pa.table({"symbol": ["x" * (4 * 1024 * 1024)]}), "lz4")
    assert len(body) < settings.max_body_bytes
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/trades", content=body, headers={"Content-Type": ARROW_STREAM})
        assert answer.status_code == 413
        assert "max_decoded_bytes" in answer.json()["detail"]
        fine = client.post(
            "/v1/trades", content=_ipc(_trades(0, 5), "lz4"), headers={"Content-Type": ARROW_STREAM}
        )
        assert fine.status_code == 202, fine.text
        metrics = client.get("/metrics").text
    assert 'mds_ingest_rejected_total{reason="too_large_decoded"} 1.0' in metrics


@pytest.mark.asyncio
async def test_decoding_past_the_budget_of_all_requests_is_503(settings: StoreSettings) -> None:
    """While another body is being decoded (a slow validation holds its share), a body that
    would take the decoding past max_decoding_bytes gets 503 with Retry-After; once it is
    done the same body is taken."""
    body = _ipc(_trades(0, 3000))  # more than 256 KB decoded (so off the event loop)
    other = _ipc(_trades(1, 3000))
    budget = measure(body).decoded_bytes * 3 // 2  # room for one of them, not two
    settings = settings.model_copy(
        update={"max_batch": 10_000, "max_body_bytes": 4 * budget, "max_decoded_bytes": budget,
                "max_decoding_bytes": budget}
    )  # fmt: skip
    app = create_app(settings)
    started, release = threading.Event(), threading.Event()
    real = ingest_module._validate_arrow

    def slow(*args: Any) -> Any:
        started.set()
        release.wait(scaled(30))
        return real(*args)

    headers = {"Content-Type": ARROW_STREAM}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(ingest_module, "_validate_arrow", slow)
                first = asyncio.create_task(
                    client.post("/v1/trades", content=body, headers=headers)
                )
                assert await asyncio.to_thread(started.wait, scaled(30))
                busy = await client.post("/v1/trades", content=other, headers=headers)
                release.set()
                answer = await first
            later = await client.post("/v1/trades", content=other, headers=headers)
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert answer.status_code == 202, answer.text
    assert later.status_code == 202, later.text
    assert app.state.service.decoding == 0


def test_kill_9_mid_ingest_loses_no_acknowledged_row(tmp_path: Path) -> None:
    writers, rows = 4, 2_000
    acked: list[int] = []
    lock = threading.Lock()
    with PostgresServer() as server:
        url = asyncio.run(server.create_database())
        asyncio.run(upgrade(url))
        service = StoreService(tmp_path, database_url=url.secret())
        service.start()
        stop = threading.Event()

        def write(writer: int) -> None:
            with StoreClient(service.url, attempts=1, timeout=60) as store:
                for batch in range(writer, 10_000, writers):
                    if stop.is_set():
                        return
                    try:
                        store.write_arrow(_trades(batch, rows))
                    except (StoreClientError, httpx.HTTPError):
                        return  # the service is gone: this batch was never acknowledged
                    with lock:
                        acked.append(batch)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        try:
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + scaled(120)
            while len(acked) < 12:
                assert time.monotonic() < deadline, "too few batches acknowledged"
                time.sleep(0.01)
            service.kill()  # SIGKILL while requests are in flight
            stop.set()
            for thread in threads:
                thread.join(60)
        finally:
            service.kill()

        async def stored() -> dict[int, int]:
            connection = await asyncpg.connect(url.secret())
            try:
                found = await connection.fetch(
                    "SELECT split_part(trade_id, '-', 1) AS batch, count(*) FROM trades GROUP BY 1"
                )
            finally:
                await connection.close()
            return {int(r["batch"][1:]): r["count"] for r in found}

        counts = asyncio.run(stored())
    assert len(acked) >= 12
    missing = {batch: counts.get(batch, 0) for batch in acked if counts.get(batch, 0) != rows}
    assert not missing, f"acknowledged batches not fully stored: {missing}"


def test_queries_answer_arrow_parquet_and_csv(client: TestClient) -> None:
    import csv as csv_module
    import io

    import pyarrow.parquet as pq

    table = _trades(0, 30)
    client.post("/v1/trades", content=_ipc(table), headers={"Content-Type": ARROW_STREAM})
    params = {"symbol": "AAPL", "start": T0.isoformat(), "end": END, "limit": 100}
    arrow = client.get("/v1/trades", params={**params, "format": "arrow"})
    assert arrow.headers["content-type"] == ARROW_STREAM
    assert pa.ipc.open_stream(arrow.content).read_all().equals(table)
    parquet = client.get("/v1/trades", params={**params, "format": "parquet"})
    assert pq.read_table(io.BytesIO(parquet.content)).equals(table)
    text = client.get("/v1/trades", params={**params, "format": "csv"})
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv_module.DictReader(io.StringIO(text.text)))
    assert [r["trade_id"] for r in rows] == table.column("trade_id").to_pylist()
    assert client.get("/v1/trades", params={**params, "format": "xml"}).status_code == 422


def test_a_page_of_bars_as_arrow_names_the_next_start(client: TestClient) -> None:
    from market_data_core.testing import make_bar

    bars = [make_bar(start=T0 + timedelta(minutes=i)).model_dump(mode="json") for i in range(5)]
    assert client.post("/v1/bars", json=bars).status_code == 202
    params = {"symbol": "AAPL", "timeframe": "1m", "start": T0.isoformat(), "end": END}
    first = client.get("/v1/bars", params={**params, "format": "arrow", "limit": 3})
    page = pa.ipc.open_stream(first.content).read_all()
    assert page.num_rows == 2  # the third start may have more sources: it opens the next page
    assert first.headers["X-Next-Start"] == (T0 + timedelta(minutes=2)).isoformat()
    rest = client.get(
        "/v1/bars", params={**params, "format": "arrow", "start": first.headers["X-Next-Start"]}
    )
    assert pa.ipc.open_stream(rest.content).read_all().num_rows == 3
    assert "X-Next-Start" not in rest.headers

"""The store service on a real PostgreSQL: readiness follows the database, and a database
crash in the middle of an ingest loses no acknowledged row and duplicates none."""

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from market_data_core.testing import T0, make_bar
from market_data_store.backends.postgres import PostgresBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade
from market_data_store.service import create_app
from market_data_store.settings import StoreSettings
from market_data_store.testing import PostgresServer


def _settings(server: PostgresServer, tmp_path: Path) -> StoreSettings:
    return StoreSettings(
        database_url=SecretStr(server.dsn),
        dead_letter_path=str(tmp_path / "dlq.ndjson"),
        health_interval=0.05,
        flush_interval=0.02,
        retry_attempts=8,
    )


def _wait_for(client: TestClient, code: int, timeout: float = 30) -> float:
    started = time.monotonic()
    while (status := client.get("/readyz").status_code) != code:
        assert time.monotonic() - started < timeout, f"/readyz stayed {status}, expected {code}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_readyz_follows_postgres(private_postgres_server: PostgresServer, tmp_path: Path) -> None:
    with TestClient(create_app(_settings(private_postgres_server, tmp_path))) as client:
        assert client.get("/readyz").status_code == 200
        private_postgres_server.stop()
        down = _wait_for(client, 503)
        body = client.get("/readyz").json()
        database = next(c for c in body["components"] if c["name"] == "database")
        assert database["state"] == "unhealthy"
        assert (
            str(private_postgres_server.password)
            not in client.get("/readyz").text + client.get("/metrics").text
        )
        private_postgres_server.start()
        up = _wait_for(client, 200)
    print(f"\nreadyz: 503 {down:.2f}s after PostgreSQL stopped, 200 {up:.2f}s after it returned")


def test_database_crash_mid_ingest_loses_no_acknowledged_row(
    private_postgres_server: PostgresServer, tmp_path: Path
) -> None:
    acknowledged: list = []
    settings = _settings(private_postgres_server, tmp_path)
    with TestClient(create_app(settings)) as client:
        stop = threading.Event()

        def crash_and_recover() -> None:
            while len(acknowledged) < 2_000 and not stop.is_set():
                time.sleep(0.01)
            private_postgres_server.kill()
            time.sleep(1.0)
            private_postgres_server.start()

        chaos = threading.Thread(target=crash_and_recover)
        chaos.start()
        try:
            for i in range(60):
                batch = [make_bar(start=T0 + timedelta(minutes=100 * i + j)) for j in range(100)]
                body = [bar.model_dump(mode="json") for bar in batch]
                response = client.post("/v1/bars", json=body, headers={"Idempotency-Key": f"b{i}"})
                while response.status_code in {429, 503}:  # what a client does: retry later
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                    response = client.post(
                        "/v1/bars", json=body, headers={"Idempotency-Key": f"b{i}"}
                    )
                assert response.status_code == 202, response.text
                acknowledged.extend(batch)
        finally:
            stop.set()
            chaos.join()
        dead_letters = client.app.state.service.store.coordinator.stats().dead_lettered  # type: ignore[attr-defined]

    stored, replayed = asyncio.run(_stored_after_replay(settings))
    assert len(stored) == len(acknowledged) == 6_000
    assert stored == sorted(acknowledged, key=lambda b: b.start)
    print(f"\nkill -9 of PostgreSQL mid-ingest: {len(acknowledged)} acknowledged, "
          f"{dead_letters} dead-lettered then replayed ({replayed} batches), "
          f"{len(stored)} stored, 0 lost, 0 duplicated")  # fmt: skip


async def _stored_after_replay(settings: StoreSettings) -> tuple[list, int]:
    from market_data_store.dlq import FileDeadLetterStore

    url: DatabaseUrl = settings.database
    await upgrade(url)
    backend = PostgresBackend(url)
    await backend.open()
    try:
        result = await FileDeadLetterStore(settings.dead_letter_path).replay(backend.write)
        end = T0 + timedelta(days=30)
        return await backend.query_bars("AAPL", "1m", T0, end, limit=100_000), result.replayed
    finally:
        await backend.close()

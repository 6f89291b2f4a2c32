"""``mds serve`` as a process: SIGTERM during a database outage, with a request waiting for
its records to be durable, still ends in time, answers the request and loses nothing."""

import asyncio
import json
import signal
import threading
import time
from pathlib import Path

import httpx

from market_data_core.testing import T0, make_trade
from market_data_core.testing.servers import scaled
from market_data_store.dlq import FileDeadLetterStore
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer, StoreService

DRAIN_TIMEOUT = 1.0


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_sigterm_during_an_outage_answers_the_waiting_request_and_exits(tmp_path: Path) -> None:
    trades = [make_trade(ts=T0, trade_id=str(i)).model_dump(mode="json") for i in range(25)]
    with PostgresServer() as server:
        url = asyncio.run(server.create_database())
        asyncio.run(upgrade(url))
        env = {"MDS_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT), "MDS_RETRY_ATTEMPTS": "2"}
        service = StoreService(tmp_path, database_url=url.secret(), env=env)
        service.start()
        try:
            server.stop()  # the database goes away
            answer: dict[str, httpx.Response] = {}

            def post() -> None:
                answer["r"] = httpx.post(f"{service.url}/v1/trades", json=trades, timeout=120)

            waiting = threading.Thread(target=post)
            waiting.start()
            deadline = time.monotonic() + scaled(60)
            while _metric(service.url, "mds_records_accepted_total") < len(trades):
                assert time.monotonic() < deadline, "the request never reached the queue"
                time.sleep(0.05)
            assert "r" not in answer  # durable: it waits while the database is down
            code = service.stop(timeout=60)
            waiting.join(60)
        finally:
            service.kill()
    log = service.log.read_text()
    # uvicorn re-raises SIGTERM once its shutdown is complete: the exit is by that signal
    assert code in {0, -signal.SIGTERM}, log[-3000:]
    assert "Application shutdown complete" in log
    response = answer["r"]
    assert response.status_code == 503
    assert "25 of 25 trades records were not stored" in response.json()["detail"]
    assert response.headers["Retry-After"]
    kept = FileDeadLetterStore(tmp_path / "service.dlq.ndjson")

    async def dead_lettered() -> int:
        return sum([len(entry.records) async for entry in kept.read()])

    assert asyncio.run(dead_lettered()) == 25
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "stopping: draining the write queue" for e in events)


def test_serve_starts_without_its_database_and_is_ready_once_it_answers(tmp_path: Path) -> None:
    """PostgreSQL down when ``mds serve`` starts: it serves (liveness 200), says it is not
    ready (503, naming the database) and refuses writes with 503 and Retry-After, instead
    of exiting into a restart loop; once the database is up it connects by itself, and a
    write is acknowledged and stored."""
    trades = [make_trade(ts=T0, trade_id=str(i)).model_dump(mode="json") for i in range(5)]
    with PostgresServer() as server:
        url = asyncio.run(server.create_database())
        asyncio.run(upgrade(url))
        server.stop()  # the database is down before the service starts
        with StoreService(tmp_path, database_url=url.secret()) as service:
            assert httpx.get(f"{service.url}/healthz", timeout=10).status_code == 200
            ready = httpx.get(f"{service.url}/readyz", timeout=10)
            assert ready.status_code == 503
            database = next(c for c in ready.json()["components"] if c["name"] == "database")
            assert database["details"]["error"].startswith("connecting:")
            refused = httpx.post(f"{service.url}/v1/trades", json=trades, timeout=10)
            assert refused.status_code == 503
            assert "has not answered since the start" in refused.json()["detail"]
            assert refused.headers["Retry-After"]
            read = httpx.get(f"{service.url}/v1/trades", timeout=10, params={
                "symbol": "AAPL", "start": T0.isoformat(), "end": "2030-01-01T00:00:00Z"})  # fmt: skip
            assert read.status_code == 503
            server.start()  # the database comes back: no restart of the service
            deadline = time.monotonic() + scaled(60)
            while httpx.get(f"{service.url}/readyz", timeout=10).status_code != 200:
                assert time.monotonic() < deadline, service.log.read_text()[-3000:]
                time.sleep(0.1)
            stored = httpx.post(f"{service.url}/v1/trades", json=trades, timeout=60)
            assert stored.status_code == 202, stored.text
            read = httpx.get(f"{service.url}/v1/trades", timeout=10, params={
                "symbol": "AAPL", "start": T0.isoformat(), "end": "2030-01-01T00:00:00Z"})  # fmt: skip
            assert len(read.json()) == 5
        assert service.process is not None
        assert service.process.returncode in {0, -signal.SIGTERM}

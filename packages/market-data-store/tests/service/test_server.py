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

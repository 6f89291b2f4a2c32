"""``mds serve`` as a process: SIGTERM during a database outage, with a request waiting for
its records to be durable, still ends in time, answers the request and loses nothing."""

import asyncio
import json
import signal
import socket
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


def _answer(port: int, request: bytes, *, timeout: float) -> bytes:
    """Send ``request`` raw; what the service answers (until it closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_hostile_requests_get_an_http_answer_and_hold_nothing(tmp_path: Path) -> None:
    """A request line or headers past the limit answer 414 / 431 (not a reset); a body
    declared longer than what is sent, or headers never finished, answer 408 once their
    time is up (not a connection held forever); the service serves on."""
    env = {"MDS_REQUEST_HEAD_TIMEOUT": "1", "MDS_REQUEST_BODY_TIMEOUT": "1"}
    with StoreService(tmp_path, env=env) as service:
        port, wait = service.port, scaled(30)
        line = _answer(
            port, b"GET /healthz?" + b"a" * 1_000_000 + b" HTTP/1.1\r\n\r\n", timeout=wait
        )
        assert line.startswith(b"HTTP/1.1 414 "), line[:200]
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 200_000 + b"\r\n\r\n"
        assert _answer(port, big, timeout=wait).startswith(b"HTTP/1.1 431 ")
        started = time.monotonic()
        slow_body = _answer(
            port,
            b"POST /v1/trades HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n[{"symbol":',
            timeout=wait,
        )
        assert slow_body.startswith(b"HTTP/1.1 408 "), slow_body[:200]
        assert b"did not arrive in time" in slow_body
        slow_head = _answer(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", timeout=wait)
        assert slow_head.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < wait  # answered, not held until the client gave up
        assert httpx.get(f"{service.url}/healthz", timeout=10).status_code == 200
    assert "Traceback" not in service.log.read_text()

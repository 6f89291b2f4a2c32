"""The HTTP clients against a real ``mds serve`` process (uvicorn, SQLite), including a
kill -9 of the service: every batch it acknowledged is in the database after a restart."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from market_data_core.testing import T0, make_bar, make_trade
from market_data_core.testing.servers import free_port
from market_data_store.client import AsyncStoreClient, StoreClient, StoreClientError


class ServiceProcess:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = os.environ | {
            "MDS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
            "MDS_DEAD_LETTER_PATH": str(tmp_path / "dlq.ndjson"),
            "MDS_PORT": str(self.port),
            "MDS_FLUSH_INTERVAL": "0.02",
            "MDS_LOG_JSON": "true",
        }
        self.log = tmp_path / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "market_data_store.cli", "serve"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"service did not start:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path)
    process.start()
    yield process
    process.stop()


def test_sync_write_and_async_read_with_paging(service: ServiceProcess) -> None:
    bars = [make_bar(start=T0 + timedelta(minutes=i)) for i in range(2500)]
    with StoreClient(service.url) as client:
        assert sum(client.write(bars[i : i + 1000]) for i in range(0, 2500, 1000)) == 2500
        assert client.health().state == "healthy"

    async def read() -> list:
        async with AsyncStoreClient(service.url) as client:
            return await client.bars("AAPL", "1m", T0, T0 + timedelta(days=3), limit=1000)

    assert asyncio.run(read()) == bars


def test_client_errors_are_typed(service: ServiceProcess) -> None:
    with StoreClient(service.url) as client:
        with pytest.raises(StoreClientError, match="one kind of record"):
            client.write([make_bar(), make_trade()])
        bad = make_bar().model_dump(mode="json") | {"volume": -1}
        response = httpx.post(f"{service.url}/v1/bars", json=[bad])
        assert response.status_code == 422


def test_acknowledged_batches_survive_kill_9(service: ServiceProcess) -> None:
    acknowledged: list = []
    with StoreClient(service.url, attempts=1) as client:
        for i in range(20):
            batch = [make_bar(start=T0 + timedelta(minutes=50 * i + j)) for j in range(50)]
            client.write(batch)
            acknowledged.extend(batch)
    service.kill()
    service.start()
    with StoreClient(service.url) as client:
        stored = client.bars("AAPL", "1m", T0, T0 + timedelta(days=3))
    assert stored == acknowledged  # every acknowledged bar, exactly once


def test_unavailable_service_raises_after_retries(tmp_path: Path) -> None:
    with StoreClient(f"http://127.0.0.1:{free_port()}", attempts=3) as client:
        with pytest.raises(StoreClientError, match="unavailable after 3 attempts"):
            client.write([make_bar()])
        assert client.retries == 2  # the first attempt is not a retry


def test_a_write_retried_until_the_service_is_back_counts_its_retries(
    service: ServiceProcess,
) -> None:
    service.kill()

    async def write() -> tuple[int, int]:
        async with AsyncStoreClient(service.url, attempts=20) as client:
            accepted = await client.write([make_bar()])
            return accepted, client.retries

    async def both() -> tuple[int, int]:
        writing = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(service.start)
        return await writing

    accepted, retries = asyncio.run(both())
    assert accepted == 1
    assert retries >= 1


def test_async_reads_of_latest_trades_quotes_and_feedback(service: ServiceProcess) -> None:
    from market_data_core.testing import make_quote

    trades = [make_trade(ts=T0 + timedelta(seconds=i), trade_id=str(i)) for i in range(5)]
    quotes = [make_quote(ts=T0 + timedelta(seconds=i)) for i in range(3)]

    async def scenario() -> None:
        async with AsyncStoreClient(service.url) as client:
            assert await client.write(trades) == 5
            assert await client.write(quotes) == 3
            assert await client.write([make_bar()]) == 1
            window = (T0, T0 + timedelta(minutes=1))
            assert await client.trades("AAPL", *window) == trades
            assert await client.quotes("AAPL", *window) == quotes
            assert [b.start for b in await client.latest_bars("1m")] == [T0]
            event = await client.feedback()
            assert event is not None
            assert event.level == "ok"

    asyncio.run(scenario())

"""The HTTP clients against a real ``mds serve`` process (uvicorn, SQLite), including a
kill -9 of the service: every batch it acknowledged is in the database after a restart."""

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from market_data_core.testing import T0, make_bar, make_trade
from market_data_core.testing.servers import free_port
from market_data_store.client import AsyncStoreClient, StoreClient, StoreClientError
from market_data_store.testing import StoreService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[StoreService]:
    """``mds serve`` on SQLite of this test's own, empty (the shared helper: scaled start-up
    wait, always reaped): for tests that kill it or need an empty store."""
    with StoreService(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreService]:
    """One ``mds serve`` for the tests of this module that neither kill it nor depend on
    what others wrote (its start-up is most of their time)."""
    with StoreService(tmp_path_factory.mktemp("shared-service")) as running:
        yield running


def test_sync_write_and_async_read_with_paging(shared_service: StoreService) -> None:
    service = shared_service
    bars = [make_bar(start=T0 + timedelta(minutes=i)) for i in range(2500)]
    with StoreClient(service.url) as client:
        assert sum(client.write(bars[i : i + 1000]) for i in range(0, 2500, 1000)) == 2500
        assert client.health().state == "healthy"

    async def read() -> list:
        async with AsyncStoreClient(service.url) as client:
            return await client.bars("AAPL", "1m", T0, T0 + timedelta(days=3), limit=1000)

    assert asyncio.run(read()) == bars


def test_client_errors_are_typed(shared_service: StoreService) -> None:
    service = shared_service  # writes nothing: both of its writes are refused
    with StoreClient(service.url) as client:
        with pytest.raises(StoreClientError, match="one kind of record"):
            client.write([make_bar(), make_trade()])
        bad = make_bar().model_dump(mode="json") | {"volume": -1}
        response = httpx.post(f"{service.url}/v1/bars", json=[bad])
        assert response.status_code == 422


def test_acknowledged_batches_survive_kill_9(service: StoreService) -> None:
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
    service: StoreService,
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


def test_async_reads_of_latest_trades_quotes_and_feedback(service: StoreService) -> None:
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


class _TimeLimit(BaseException):
    """What a test's time limit (pytest-timeout) or ^C raises inside a wait."""


def test_a_service_interrupted_while_starting_is_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test stopped by its time limit while ``mds serve`` comes up leaves no server
    behind (it used to: ``__exit__`` never runs when ``__enter__`` raises)."""
    service = StoreService(tmp_path)

    def interrupted(url: str, **_: object) -> httpx.Response:
        raise _TimeLimit

    monkeypatch.setattr(httpx, "get", interrupted)
    with pytest.raises(_TimeLimit):
        service.start()
    assert service.process is not None
    assert service.process.poll() is not None  # killed and reaped

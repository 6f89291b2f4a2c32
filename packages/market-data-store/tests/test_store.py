"""The in-process Store: its circuit breaker recovers as soon as the database answers, a
stop ends within its drain timeout even while the database is down, and its columnar read
API gives back what an Arrow write stored."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from market_data_core import HealthState
from market_data_core.testing import T0, make_trade
from market_data_core.testing.servers import scaled
from market_data_store.backends.base import Record, WriteResult
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.columnar import SCHEMAS, Kind, conform, from_models
from market_data_store.dlq import FileDeadLetterStore
from market_data_store.exceptions import CoordinatorStoppedError, TransientBackendError
from market_data_store.retry import BreakerState
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

pytestmark = pytest.mark.asyncio


class FlakyBackend(SqliteBackend):
    """Real SQLite that can be made "down": writes and pings fail as a lost server would."""

    down = False
    unreachable = False

    async def open(self) -> None:
        if self.unreachable:
            msg = "connection refused"
            raise TransientBackendError(msg)
        await super().open()

    async def write(self, records: Sequence[Record]) -> WriteResult:
        if self.down:
            msg = "connection refused"
            raise TransientBackendError(msg)
        return await super().write(records)

    async def ping(self) -> None:
        if self.down:
            msg = "connection refused"
            raise TransientBackendError(msg)
        await super().ping()


def _settings(tmp_path: Path, **overrides: object) -> StoreSettings:
    values: dict[str, object] = {
        "database_url": SecretStr(f"sqlite:///{tmp_path / 'store.db'}"),
        "dead_letter_path": str(tmp_path / "dlq.ndjson"),
        "flush_interval": 0.01,
        "retry_attempts": 1,
        "breaker_threshold": 1,
        "breaker_reset_seconds": 3600,  # only a successful check can reopen writes
        "health_interval": 0.05,
    }
    return StoreSettings(**(values | overrides))  # type: ignore[arg-type]


def _store(settings: StoreSettings) -> tuple[Store, FlakyBackend]:
    backend = FlakyBackend(settings.database)
    return Store(settings, backend=backend), backend


async def _until_open(store: Store) -> None:
    # polling: the breaker has no event to wait on
    while store.coordinator.breaker.state is not BreakerState.OPEN:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def test_a_store_started_without_its_database_connects_once_it_answers(
    tmp_path: Path,
) -> None:
    store, backend = _store(_settings(tmp_path))
    backend.unreachable = True
    with pytest.raises(TransientBackendError):
        await store.start()  # by default a start needs the database
    await store.start(migrate=True, wait_for_database=True)
    try:
        health = await store.health()
        assert health.state is HealthState.UNHEALTHY
        database = next(c for c in health.components if c.name == "database")
        assert database.details["error"] == "connecting: connection refused"
        assert "has not answered since the start" in (store.unavailable() or "")
        with pytest.raises(CoordinatorStoppedError):
            await store.submit_many([make_trade(ts=T0)])
        backend.unreachable = False
        async with asyncio.timeout(30):
            while store.unavailable() is not None:  # noqa: ASYNC110 - polling the state
                await asyncio.sleep(0.01)
        receipt = await store.submit_many([make_trade(ts=T0)])
        await asyncio.wait_for(receipt.wait(), scaled(30))
        assert receipt.stored
    finally:
        await store.stop()


async def test_a_stop_while_connecting_ends_at_once(tmp_path: Path) -> None:
    store, backend = _store(_settings(tmp_path))
    backend.unreachable = True
    await store.start(wait_for_database=True)
    await asyncio.wait_for(store.stop(), scaled(5))
    backend.unreachable = False
    await asyncio.sleep(0.6)  # past the first retry: nothing connects after the stop
    assert store.coordinator.state.value == "created"


async def test_writes_resume_once_a_check_of_the_database_succeeds(tmp_path: Path) -> None:
    store, backend = _store(_settings(tmp_path))
    await store.start(migrate=True)
    try:
        backend.down = True
        receipt = await store.submit_many([make_trade()])
        await _until_open(store)
        backend.down = False
        # the breaker's own timeout is an hour: the background check reopens it
        await asyncio.wait_for(receipt.wait(), scaled(30))
        assert receipt.stored
        assert store.coordinator.breaker.state is BreakerState.CLOSED
        assert await backend.count("trades") == 1
    finally:
        await store.stop()


async def test_a_stop_during_an_outage_ends_within_the_drain_timeout(tmp_path: Path) -> None:
    settings = _settings(tmp_path, drain_timeout=0.2)
    store, backend = _store(settings)
    await store.start(migrate=True)
    backend.down = True
    receipt = await store.submit_many([make_trade(), make_trade(symbol="MSFT")])
    await _until_open(store)
    await asyncio.wait_for(store.stop(), scaled(30))
    assert receipt.done
    assert receipt.dead_lettered == 2
    kept = FileDeadLetterStore(settings.dead_letter_path)
    assert [len(entry.records) async for entry in kept.read()] == [2]


async def test_concurrent_stops_all_wait_for_the_first(tmp_path: Path) -> None:
    store, _ = _store(_settings(tmp_path))
    await store.start(migrate=True)
    receipt = await store.submit_many([make_trade()])
    await asyncio.gather(store.stop(), store.stop(), store.stop())
    assert receipt.stored


async def test_query_table_and_query_frame_give_back_what_submit_arrow_stored(
    tmp_path: Path,
) -> None:
    """The Python read API of the columnar path: a pyarrow Table in the columnar schema
    and a pandas DataFrame of the same rows, after an Arrow write through the Store."""
    trades = [
        make_trade(symbol="AAPL", ts=T0 + timedelta(seconds=i), price=100.0 + i, trade_id=str(i))
        for i in range(20)
    ]
    written = conform(from_models(trades, Kind.TRADES), Kind.TRADES)
    store = Store(_settings(tmp_path))
    await store.start(migrate=True)
    try:
        receipt = await store.submit_arrow(written, Kind.TRADES)
        await store.flush()
        assert receipt.written == 20
        end = datetime(2100, 1, 1, tzinfo=UTC)
        table = await store.query_table(Kind.TRADES, "AAPL", T0, end)
        assert table.schema.equals(SCHEMAS[Kind.TRADES])
        assert table.equals(written)
        frame = await store.query_frame("trades", "AAPL", T0 + timedelta(seconds=5), end)
        assert list(frame["price"]) == [100.0 + i for i in range(5, 20)]
        assert list(frame["trade_id"]) == [str(i) for i in range(5, 20)]
        with pytest.raises(ValueError, match="needs a timeframe"):
            await store.query_table("bars", "AAPL", T0, end)
    finally:
        await store.stop()

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr

from market_data_core.testing import make_trade
from market_data_core.testing.servers import scaled
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.sinks.store import StoreSink, StoreSinkParams
from market_data_store.client import StoreClientError
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

DATA = Path(__file__).resolve().parents[4] / "examples" / "data"
DAY = (datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))


def count(path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def snapshot(path: Path, table: str, columns: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(f"SELECT {columns} FROM {table} ORDER BY {columns}").fetchall()


async def run(graph: Graph, **kwargs: Any) -> Any:
    return await asyncio.wait_for(GraphRuntime(graph, **kwargs).run(), timeout=scaled(120))


def synthetic_into(database: str, **params: Any) -> Graph:
    return Graph.build(
        [
            node(
                "gen", "synthetic", symbols=["AAPL", "MSFT"], count=3000, batch_size=1000, **params
            ),
            node("db", "store", database=database),
        ],
        ["gen -> db"],
    )


async def query_trades(database: str, symbol: str) -> list[Any]:
    store = Store(StoreSettings(database_url=SecretStr(database)))
    await store.start()
    try:
        return await store.query_trades(symbol, *DAY, limit=10_000)
    finally:
        await store.stop()


@pytest.mark.asyncio
async def test_rows_land_and_a_second_identical_run_changes_nothing(tmp_path: Path) -> None:
    db_path = tmp_path / "md.db"
    database = f"sqlite:///{db_path}"
    first = await run(synthetic_into(database))
    assert first.nodes["db"].counters["written"] == 3000
    assert count(db_path, "trades") == 3000
    stored = await query_trades(database, "AAPL")
    emitted = [t for t in records.to_models(_synthetic()) if t.symbol == "AAPL"]
    assert sorted(stored, key=lambda t: (t.ts, t.trade_id)) == sorted(
        emitted, key=lambda t: (t.ts, t.trade_id)
    )

    columns = "symbol, ts, trade_id, price, size, side"
    before = snapshot(db_path, "trades", columns)
    second = await run(synthetic_into(database))
    assert second.nodes["db"].counters["written"] == 3000
    assert count(db_path, "trades") == 3000
    assert snapshot(db_path, "trades", columns) == before
    assert await query_trades(database, "AAPL") == stored
    assert (tmp_path / "md.dlq.ndjson").exists() is False


def _synthetic() -> pa.Table:
    from market_data_pipeline.providers.synthetic import SyntheticParams, SyntheticProvider

    provider = SyntheticProvider("gen", SyntheticParams(symbols=["AAPL", "MSFT"], count=3000))
    return pa.concat_tables(list(provider.tables()))


@pytest.mark.asyncio
async def test_replayed_bars_land_in_the_store(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'bars.db'}"
    graph = Graph.build(
        [
            node(
                "bars",
                "replay",
                path=str(DATA / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"),
                kind="bars",
                symbol="6EH4.XCME",
                timeframe="1m",
                timezone="UTC",
                source="cme",
            ),
            node("db", "store", database=database),
        ],
        ["bars -> db"],
    )
    result = await run(graph)
    assert result.nodes["db"].counters["written"] == 29_996
    store = Store(StoreSettings(database_url=SecretStr(database)))
    await store.start()
    try:
        bars = await store.query_bars("6EH4.XCME", "1m", *DAY, source="cme", limit=5000)
    finally:
        await store.stop()
    assert bars
    assert bars[0].start >= DAY[0]
    assert bars[0].source == "cme"


@pytest.mark.asyncio
async def test_a_shared_store_in_services_is_used_and_left_running(
    tmp_path: Path, make_context
) -> None:
    store = Store(StoreSettings(database_url=SecretStr(f"sqlite:///{tmp_path / 's.db'}")))
    await store.start(migrate=True)
    try:
        sink = StoreSink("db", StoreSinkParams(database="sqlite:///elsewhere/never.db"))
        await sink.open(make_context("db", services={"store": store}))
        assert sink.store is store
        # two trades at one instant without a trade id: told apart by their ordinal
        await sink.write(records.from_models([make_trade(), make_trade(price=2.0, ordinal=1)]))
        await sink.flush()
        await sink.close()
        trades = await store.query_trades("AAPL", *DAY)
        assert sorted(t.price for t in trades) == [2.0, 185.25]
        assert not (tmp_path / "elsewhere").exists()
    finally:
        await store.stop()


@pytest.mark.asyncio
async def test_rows_the_store_did_not_write_are_counted_as_not_stored(
    tmp_path: Path, make_context
) -> None:
    """A store whose database refuses one row: the sink's summary says so."""
    from market_data_store.backends.sqlite import SqliteBackend
    from market_data_store.exceptions import InvalidValueError

    class Refusing(SqliteBackend):
        async def write(self, batch: Any) -> Any:
            if any(getattr(r, "price", None) == 13.0 for r in batch):
                raise InvalidValueError("refused", reason="unlucky price")
            return await super().write(batch)

    settings = StoreSettings(
        database_url=SecretStr(f"sqlite:///{tmp_path / 's.db'}"),
        dead_letter_path=str(tmp_path / "dlq.ndjson"),
    )
    store = Store(settings, backend=Refusing(settings.database))
    await store.start(migrate=True)
    try:
        sink = StoreSink("db", StoreSinkParams())
        ctx = make_context("db", services={"store": store})
        await sink.open(ctx)
        trades = [make_trade(price=float(p), ordinal=p) for p in (11, 12, 13, 14)]
        await sink.write(records.from_models(trades))
        await sink.flush()
        await sink.close()
        assert ctx.stats.counters["not_stored"] == 1
        stored = await store.query_trades("AAPL", *DAY)
        assert sorted(t.price for t in stored) == [11.0, 12.0, 14.0]
    finally:
        await store.stop()


@pytest.mark.asyncio
async def test_own_store_is_exposed_and_drained_on_close(tmp_path: Path, make_context) -> None:
    db_path = tmp_path / "own.db"
    sink = StoreSink("db", StoreSinkParams(database=f"sqlite:///{db_path}"))
    ctx = make_context("db")
    await sink.open(ctx)
    assert isinstance(sink.store, Store)
    assert sink.store.bus is not None  # backpressure subscribes to this bus
    await sink.write(records.from_models([make_trade()]))
    await sink.close()  # without flush: stop(drain=True) still writes what was accepted
    assert count(db_path, "trades") == 1
    assert ctx.stats.counters["written"] == 1


@pytest.mark.asyncio
async def test_writes_through_the_http_service(store_service) -> None:
    graph = Graph.build(
        [
            node("gen", "synthetic", kind="quotes", symbols=["EURUSD"], count=1500, batch_size=500),
            node("db", "store", url=store_service.url, http_batch=400),
        ],
        ["gen -> db"],
    )
    result = await run(graph)
    assert result.nodes["db"].counters["written"] == 1500
    assert result.nodes["db"].counters["acknowledged"] == 1500
    assert "retries" not in result.nodes["db"].counters
    store = Store(StoreSettings(database_url=SecretStr(store_service.database)))
    await store.start()
    try:
        quotes = await store.query_quotes("EURUSD", *DAY, limit=5000)
    finally:
        await store.stop()
    assert len(quotes) == 1500


@pytest.mark.asyncio
async def test_http_writes_retry_until_the_service_is_back_and_count_it(
    store_service, make_context
) -> None:
    store_service.kill()
    sink = StoreSink("db", StoreSinkParams(url=store_service.url, attempts=20))
    ctx = make_context("db")
    await sink.open(ctx)
    try:
        await sink.write(records.from_models([make_trade()]))  # in flight, not answered
        writing = asyncio.create_task(sink.flush())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(store_service.start)
        await asyncio.wait_for(writing, scaled(30))
    finally:
        await sink.close()
    assert ctx.stats.counters["acknowledged"] == 1
    assert ctx.stats.counters["retries"] >= 1


@pytest.mark.asyncio
async def test_a_request_that_fails_for_good_fails_the_node(store_service, make_context) -> None:
    """Requests go out while earlier ones are in flight (two by default); one that fails
    after its attempts is never counted as acknowledged and fails the node: at the write
    that waits for it, or at the flush."""
    store_service.kill()
    sink = StoreSink("db", StoreSinkParams(url=store_service.url, attempts=1, http_batch=2))
    ctx = make_context("db")
    await sink.open(ctx)
    try:
        await sink.write(records.from_models([make_trade(price=100.0 + i) for i in range(4)]))
        with pytest.raises(StoreClientError, match="store unavailable after 1 attempts"):
            await asyncio.wait_for(sink.flush(), scaled(30))
        with pytest.raises(StoreClientError, match="store unavailable after 1 attempts"):
            await sink.write(records.from_models([make_trade(price=100.0 + i) for i in range(6)]))
    finally:
        await sink.close()
    assert "acknowledged" not in ctx.stats.counters


def test_a_bad_database_url_fails_validation_naming_the_node() -> None:
    graph = Graph.build(
        [node("gen", "synthetic"), node("db", "store", database="mysql://x/y")], ["gen -> db"]
    )
    with pytest.raises(GraphError, match="not supported") as info:
        graph.validated()
    assert info.value.node_id == "db"


def test_the_database_url_is_secret() -> None:
    params = StoreSinkParams(database="postgresql://md:hunter2@db/md")
    assert "hunter2" not in repr(params)


class _Receipt:
    def __init__(self, rows: int) -> None:
        self.done, self.total, self.written = True, rows, rows
        self.dead_lettered, self.refused = 0, []


class _Store:
    """Keeps what the sink submits (the sink's side only; no database)."""

    def __init__(self) -> None:
        self.batches: list[tuple[pa.Table, Any]] = []

    async def submit_arrow(self, batch: pa.Table, kind: Any) -> _Receipt:
        self.batches.append((batch, kind))
        return _Receipt(batch.num_rows)

    async def flush(self) -> None:
        return None


@pytest.mark.asyncio
async def test_reason_fills_the_versions_written_without_one(make_context) -> None:
    store = _Store()
    sink = StoreSink("db", StoreSinkParams(reason="backfill"))
    await sink.open(make_context("db", services={"store": store}))
    try:
        given = records.from_models([make_trade(), make_trade(ordinal=1, reason="correction")])
        await sink.write(given)
        await sink.write(given.drop_columns(["reason"]))  # a table without the column
        await sink.flush()
    finally:
        await sink.close()
    (first, kind), (second, _) = store.batches
    assert kind is records.Kind.TRADES
    assert first.column("reason").to_pylist() == ["backfill", "correction"]
    assert second.column("reason").to_pylist() == ["backfill", "backfill"]
    assert first.drop_columns(["reason"]).equals(given.drop_columns(["reason"]))

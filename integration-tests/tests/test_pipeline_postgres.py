"""The pipeline writing into the store on a real PostgreSQL: the bars in the database equal
pandas' resampling of the very trades the pipeline saw, and a rerun changes nothing."""

from pathlib import Path

import pandas as pd
import pytest
import redis.asyncio as aioredis
from harness import DATA, assert_bars_equal, oracle_bars, real_trades, stored_bars
from pydantic import SecretStr

from market_data_core import RateAdjustment
from market_data_core.testing.servers import RedisServer
from market_data_core.transports import wire
from market_data_pipeline import UnifiedRuntime, UnifiedRuntimeSettings
from market_data_store.dsn import DatabaseUrl
from market_data_store.settings import StoreSettings
from market_data_store.store import Store
from market_data_store.testing import PostgresDatabase


@pytest.mark.asyncio
async def test_synthetic_trades_to_bars_in_postgres_equal_pandas(
    postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    trades_file = tmp_path / "trades.parquet"
    config = {
        "name": "pg-quickstart",
        "nodes": [
            {
                "id": "trades",
                "type": "synthetic",
                "params": {
                    "kind": "trades",
                    "symbols": 5,
                    "seed": 11,
                    "start": "2024-01-02T14:30:00Z",
                    "duration": "1h",
                    "events_per_second": 2,
                },
            },
            {"id": "m1", "type": "resample_ohlc", "params": {"timeframe": "1m"}},
            {"id": "m5", "type": "resample_ohlc", "params": {"timeframe": "5m"}},
            {"id": "store", "type": "store"},
            {"id": "tape", "type": "file", "params": {"path": str(trades_file)}},
        ],
        "edges": ["trades -> m1", "trades -> tape", "m1 -> m5", "m1 -> store", "m5 -> store"],
    }
    settings = UnifiedRuntimeSettings.load(None, database_url=SecretStr(postgres_database.dsn))
    async with UnifiedRuntime(settings) as rt:
        await rt.run(config)
        first = rt.store_report
    assert postgres_database.password not in str(first)  # the report shows a redacted URL
    trades = pd.read_parquet(trades_file)
    for timeframe, rule in (("1m", "1min"), ("5m", "5min")):
        got = await stored_bars(postgres_database.dsn, timeframe)
        assert_bars_equal(got, oracle_bars(trades, rule), f"synthetic {timeframe}")
    async with UnifiedRuntime(settings) as rt:
        await rt.run(config)
        before, after = rt.store_report["tables"]["bars"]
    assert before == after == first["tables"]["bars"][1]
    print(f"\npipeline -> PostgreSQL: {after} bars, equal to pandas; a rerun added 0")


@pytest.mark.asyncio
async def test_replay_of_real_trades_into_postgres_equals_pandas(
    postgres_database: PostgresDatabase,
) -> None:
    path = DATA / "btcusdt-trades.parquet"
    config = {
        "name": "btc-replay",
        "mode": "classic",
        "source": {
            "type": "replay",
            "params": {"path": str(path), "kind": "trades", "symbol": "BTC/USDT"},
        },
        "operators": [{"type": "resample_ohlc", "params": {"timeframe": "1s"}}],
        "sink": {"type": "store"},
    }
    settings = UnifiedRuntimeSettings.load(None, database_url=SecretStr(postgres_database.dsn))
    async with UnifiedRuntime(settings) as rt:
        await rt.run(config)
    got = await stored_bars(postgres_database.dsn, "1s")
    assert_bars_equal(got, oracle_bars(real_trades(), "1s"), "BTC/USDT 1s")
    assert str(DatabaseUrl.parse(postgres_database.dsn)).count(str(postgres_database.password)) == 0


@pytest.mark.asyncio
async def test_a_saturated_store_pauses_the_pipeline_over_redis_and_nothing_is_lost(
    postgres_database: PostgresDatabase, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The store's small queue fills; its hard feedback (over Redis and its own bus) pauses
    the synthetic provider; ok resumes it; every trade lands exactly once."""
    store_settings = StoreSettings(
        database_url=SecretStr(postgres_database.dsn),
        redis_url=SecretStr(redis_server.url),
        queue_capacity=4_000,
        batch_size=1_000,
        workers=1,
        heartbeat_interval=0.5,
        dead_letter_path=str(tmp_path / "dlq.ndjson"),
    )
    n = 120_000
    config = {
        "name": "saturate",
        "nodes": [
            {
                "id": "trades",
                "type": "synthetic",
                "params": {"kind": "trades", "symbols": 10, "count": n, "batch_size": 2_000},
            },
            {"id": "store", "type": "store"},
        ],
        "edges": ["trades -> store"],
    }
    settings = UnifiedRuntimeSettings.load(None, redis_url=SecretStr(redis_server.url))
    async with Store(store_settings) as store:
        await store.migrate()
        async with UnifiedRuntime(settings, services={"store": store}) as rt:
            result = await rt.run(config)
            pauses = rt.pauses
            assert rt.controller is not None
            paused_seconds = rt.controller.paused_seconds
        await store.flush()
        stored = await store.backend.count("trades")
        stats = store.coordinator.stats()
    assert result.nodes["trades"].items_out == n
    assert pauses > 0, "the pipeline never paused although the store's queue filled"
    assert stored == n
    assert stats.dropped == 0
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        entries = await client.xrange("md:feedback")
    finally:
        await client.aclose()
    rates = [
        message
        for _, fields in entries
        if isinstance(message := wire.decode(fields).message, RateAdjustment)
    ]
    scales = [r.scale for r in rates if r.provider == "saturate"]
    assert 0.0 in scales, "no pause was published for the orchestrator to see"
    assert scales[-1] == 1.0, "the last published rate is not full speed"
    print(
        f"\nsaturated store: {pauses} pauses ({paused_seconds:.2f} s paused), {stored} of {n} trades stored"
    )

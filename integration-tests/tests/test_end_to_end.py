"""The platform as users run it: `mdo serve` supervises `mdp run` jobs that write through
`mds serve` into a real PostgreSQL, with feedback over a real Redis.

- Two jobs (seeded synthetic trades; a replay of the real files in examples/data) end with
  bars in PostgreSQL equal to pandas' resampling of the same input.
- The backpressure loop across processes: a store with a small write queue sends hard
  feedback over Redis, both pipelines pause and resume on ok, and every trade is stored
  exactly once.
"""

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from harness import (
    DATA,
    OrchestratorService,
    assert_bars_equal,
    oracle_bars,
    oracle_rollup,
    real_trades,
    stored_bars,
    until,
    write_deployment,
    write_yaml,
)
from pydantic import SecretStr

from market_data_core import BackpressureLevel, FeedbackEvent, RateAdjustment
from market_data_core.testing.servers import RedisServer
from market_data_core.transports import wire
from market_data_store.settings import StoreSettings
from market_data_store.store import Store
from market_data_store.testing import PostgresDatabase, StoreService

PASSWORD = "e2e-pw-5c1a"


def _synthetic_job(tmp_path: Path, store_url: str, tape: Path) -> Path:
    return write_yaml(
        tmp_path / "synthetic.yaml",
        {
            "name": "synthetic",
            "nodes": [
                {
                    "id": "trades",
                    "type": "synthetic",
                    "params": {
                        "kind": "trades",
                        "symbols": ["AAPL", "MSFT", "NVDA", "SPY"],
                        "seed": 7,
                        "start": "2024-01-02T14:30:00Z",
                        "duration": "2h",
                        "count": 40_000,
                        "batch_size": 2_000,
                    },
                },
                {"id": "m1", "type": "resample_ohlc", "params": {"timeframe": "1m"}},
                {"id": "m5", "type": "resample_ohlc", "params": {"timeframe": "5m"}},
                {"id": "store", "type": "store", "params": {"url": store_url}},
                {"id": "tape", "type": "file", "params": {"path": str(tape)}},
            ],
            "edges": ["trades -> m1", "trades -> tape", "m1 -> m5", "m1 -> store", "m5 -> store"],
        },
    )


def _replay_job(tmp_path: Path, store_url: str) -> Path:
    return write_yaml(
        tmp_path / "replay.yaml",
        {
            "name": "replay",
            "nodes": [
                {
                    "id": "btc",
                    "type": "replay",
                    "params": {
                        "path": str(DATA / "btcusdt-trades.parquet"),
                        "kind": "trades",
                        "symbol": "BTC/USDT",
                    },
                },
                {
                    "id": "euro_fx",
                    "type": "replay",
                    "params": {
                        "path": str(DATA / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"),
                        "kind": "bars",
                        "symbol": "6EH4.XCME",
                        "timeframe": "1m",
                        "source": "cme",
                        "timezone": "UTC",
                    },
                },
                {
                    "id": "btc_1s",
                    "type": "resample_ohlc",
                    "params": {"timeframe": "1s", "source": "binance"},
                },
                {
                    "id": "euro_fx_1h",
                    "type": "resample_ohlc",
                    "params": {"timeframe": "1h", "source": "cme"},
                },
                {"id": "store", "type": "store", "params": {"url": store_url}},
            ],
            "edges": [
                "btc -> btc_1s",
                "euro_fx -> euro_fx_1h",
                "btc_1s -> store",
                "euro_fx_1h -> store",
            ],
        },
    )


def _euro_fx_minutes() -> pd.DataFrame:
    raw = pd.read_csv(DATA / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz")
    return pd.DataFrame(
        {
            "symbol": "6EH4.XCME",
            "start": pd.to_datetime(raw["timestamp_utc"], utc=True),
            **{column: raw[column] for column in ("open", "high", "low", "close", "volume")},
        }
    )


@pytest.mark.asyncio
async def test_orchestrated_jobs_write_bars_into_postgres_equal_to_pandas(
    postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    tape = tmp_path / "synthetic-trades.parquet"
    with StoreService(tmp_path, database_url=postgres_database.dsn) as store:
        jobs = [
            {"name": "synthetic", "config": str(_synthetic_job(tmp_path, store.url, tape))},
            {"name": "replay", "config": str(_replay_job(tmp_path, store.url))},
        ]
        with OrchestratorService(write_deployment(tmp_path, jobs, store_url=store.url)) as orch:
            finished = await orch.until_jobs("completed", limit=180)
            # one slow /readyz of the store under the flood degrades it until the next poll
            await until(
                lambda: orch.get("/readyz")["state"] == "healthy", "the orchestrator ready", 30
            )
    assert {name: job["restarts"] for name, job in finished.items()} == {
        "synthetic": 0,
        "replay": 0,
    }

    trades = pd.read_parquet(tape)
    assert len(trades) == 40_000
    counts: dict[str, int] = {}
    for timeframe, rule in (("1m", "1min"), ("5m", "5min")):
        got = await stored_bars(postgres_database.dsn, timeframe, source="synthetic")
        assert_bars_equal(got, oracle_bars(trades, rule), f"synthetic {timeframe}")
        counts[f"synthetic {timeframe}"] = len(got)
    got = await stored_bars(postgres_database.dsn, "1s", source="binance", symbols=["BTC/USDT"])
    assert_bars_equal(got, oracle_bars(real_trades(), "1s"), "BTC/USDT 1s")
    counts["BTC/USDT 1s"] = len(got)
    got = await stored_bars(postgres_database.dsn, "1h", source="cme", symbols=["6EH4.XCME"])
    assert_bars_equal(got, oracle_rollup(_euro_fx_minutes(), "1h"), "6EH4 1h")
    counts["6EH4 1h"] = len(got)
    print(f"\norchestrated jobs -> PostgreSQL, equal to pandas: {counts}")


def _feedback(url: str, stream: str = "md:feedback") -> list[Any]:
    client = redis.Redis.from_url(url)
    try:
        return [wire.decode(fields).message for _, fields in client.xrange(stream)]
    finally:
        client.close()


def _flood_job(tmp_path: Path, name: str, symbols: list[str], store_url: str, n: int) -> Path:
    return write_yaml(
        tmp_path / f"{name}.yaml",
        {
            "name": name,
            "nodes": [
                {
                    "id": "trades",
                    "type": "synthetic",
                    "params": {
                        "kind": "trades",
                        "symbols": symbols,
                        "count": n,
                        "batch_size": 1_000,
                    },
                },
                {"id": "store", "type": "store", "params": {"url": store_url, "http_batch": 1_000}},
            ],
            "edges": ["trades -> store"],
        },
    )


@pytest.mark.asyncio
async def test_hard_feedback_over_redis_pauses_both_pipelines_and_nothing_is_lost(
    postgres_database: PostgresDatabase, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The store acknowledges once a batch is queued (`MDS_ACK=queued`) into a queue of 3000
    rows drained by one worker: two fast writers fill it, its hard feedback reaches both
    pipelines over Redis, they pause, ok resumes them, and every trade lands once."""
    n = 60_000
    env = {
        "MDS_REDIS_URL": redis_server.url,
        "MDS_ACK": "queued",
        "MDS_QUEUE_CAPACITY": "3000",
        "MDS_BATCH_SIZE": "500",
        "MDS_WORKERS": "1",
        "MDS_HEARTBEAT_INTERVAL": "0.5",
    }
    with StoreService(tmp_path, database_url=postgres_database.dsn, env=env) as store:
        jobs = [
            {
                "name": name,
                "config": str(_flood_job(tmp_path, name, symbols, store.url, n)),
                "env": {"MDP_REDIS_URL": redis_server.url},
            }
            for name, symbols in (("alpha", ["AAA", "BBB"]), ("beta", ["CCC", "DDD"]))
        ]
        deployment = write_deployment(
            tmp_path, jobs, store_url=store.url, feedback_redis=redis_server.url
        )
        with OrchestratorService(deployment) as orch:
            await orch.until_jobs("completed", limit=240)
            # the writers are done; the store drains what it queued and returns to ok
            store_level = lambda: orch.get("/v1/feedback")["coordinators"]["store"]  # noqa: E731
            drained = await until(lambda: store_level()["current_level"] == "ok", "ok", 60)
            seen_by_orchestrator = orch.get("/v1/feedback")
        messages = _feedback(redis_server.url)  # before the store stops (it then says hard)
    async with Store(StoreSettings(database_url=SecretStr(postgres_database.dsn))) as db:
        stored = await db.backend.count("trades")
    levels = [m.level for m in messages if isinstance(m, FeedbackEvent)]
    rates: dict[str, list[float]] = {}
    for message in messages:
        if isinstance(message, RateAdjustment):
            rates.setdefault(message.provider, []).append(message.scale)

    assert stored == 2 * n, f"{stored} trades stored of {2 * n} sent"
    assert BackpressureLevel.HARD in levels, "the store's queue never reached hard"
    events = [m for m in messages if isinstance(m, FeedbackEvent)]
    assert levels[-1] is BackpressureLevel.OK, f"the store did not end at ok: {events[-5:]}"
    for job in ("alpha", "beta"):
        assert 0.0 in rates.get(job, []), f"{job} never paused (its rates: {rates.get(job)})"
        first_pause = rates[job].index(0.0)
        assert 1.0 in rates[job][first_pause:], f"{job} never resumed after its first pause"
    # the orchestrator followed the same loop over Redis: the store back at ok, both jobs'
    # rates (a job may end while the store still drains, so its last rate need not be 1.0)
    assert seen_by_orchestrator["coordinators"]["store"]["current_level"] == "ok"
    assert set(seen_by_orchestrator["providers"]) >= {"alpha", "beta"}
    pauses = {job: sum(1 for scale in scales if scale == 0.0) for job, scales in rates.items()}
    print(
        f"\nbackpressure over Redis: {levels.count(BackpressureLevel.HARD)} hard events,"
        f" pauses per job {pauses}, {stored} of {2 * n} trades stored once;"
        f" the store was back at ok {drained:.2f} s after the jobs completed"
    )

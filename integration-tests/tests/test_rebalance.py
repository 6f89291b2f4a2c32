"""Scaling a partitioned job while it runs loses nothing: the orchestrator's supervisor runs
the bars job over three partition streams with one replica, is scaled to two, then to
three while the feed is still writing; every rebalance stops the replicas with drain and
starts the new set on its share (replica i: partitions p with p % replicas == i). The bars
in PostgreSQL equal pandas' over the whole input."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from harness import assert_bars_equal, oracle_bars, stored_bars, write_yaml
from test_scale_out import PARTITIONS, Processes, delivered, feed_config, make_trades

from market_data_core.testing.servers import RedisServer, scaled
from market_data_orchestrator.deployment import Deployment, JobSpec
from market_data_orchestrator.jobs import JobState
from market_data_orchestrator.supervisor import Supervisor
from market_data_store.testing import PostgresDatabase


def bars_job(path: Path, redis_url: str, dsn: str) -> Path:
    """One config for every replica: ``{partition}`` picks the stream of each copy."""
    nodes = [
        {
            "id": "ticks",
            "type": "redis_stream",
            "params": {
                "url": redis_url,
                "stream": "ticks:{partition}",
                "group": "bars",
                "count": 2,
                "idle_stop": scaled(6.0),
                "claim_idle": 1.0,
            },
        },
        {"id": "m1", "type": "resample_ohlc", "params": {"timeframe": "1m", "source": "rebal"}},
        {"id": "store", "type": "store", "params": {"database": dsn}},
    ]
    return write_yaml(
        path, {"name": "bars", "nodes": nodes, "edges": ["ticks -> m1", "m1 -> store"]}
    )


async def wait_for(predicate, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + scaled(limit)
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
@pytest.mark.slow
async def test_scaling_a_partitioned_job_mid_run_leaves_the_bars_exactly_as_pandas_makes_them(
    postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    trades = make_trades(tmp_path / "trades.parquet")
    with RedisServer() as redis_server:
        url = redis_server.url
        client = aioredis.Redis.from_url(url)
        procs = Processes(tmp_path)
        spec = JobSpec(
            name="bars",
            config=bars_job(tmp_path / "bars.yaml", url, postgres_database.dsn),
            replicas=1,
            partitions=PARTITIONS,
            restart={"policy": "on-failure", "backoff_initial": 0.2},
            writes_to_store=False,
            stop_timeout=scaled(30),
            env={"MDP_LOG_LEVEL": "info"},
        )
        supervisor = Supervisor(Deployment(jobs=[spec]))
        try:
            await supervisor.start("bars")
            feed = procs.start(
                "feed", feed_config(tmp_path / "feed.yaml", url, tmp_path / "trades.parquet")
            )

            async def read(entries: int) -> bool:
                info = supervisor.job("bars")
                assert info.state is not JobState.FAILED, info.last_error
                return min([await delivered(client, p) for p in range(PARTITIONS)]) >= entries

            await wait_for(lambda: read(10), "the replica to read 10 entries of each stream")
            assert feed.poll() is None, "the feed ended before the first scale: not mid-run"
            info = await supervisor.scale("bars", 2, by="test")
            assert [r.partitions for r in info.replicas] == [[0, 2], [1]]

            await wait_for(lambda: read(25), "the two replicas to read 25 entries of each")
            info = await supervisor.scale("bars", 3, by="test")
            assert [r.partitions for r in info.replicas] == [[0], [1], [2]]

            assert await asyncio.to_thread(feed.wait, scaled(120)) == 0, procs.log("feed")

            async def completed() -> bool:
                info = supervisor.job("bars")
                assert info.state is not JobState.FAILED, info.last_error
                return info.state is JobState.COMPLETED

            await wait_for(completed, "the three replicas to end (their streams idle)", 120)
            assert [r.last_exit_code for r in supervisor.job("bars").replicas] == [0, 0, 0]
        finally:
            await supervisor.aclose()
            procs.close()
            await client.aclose()

    got = await stored_bars(postgres_database.dsn, "1m", source="rebal")
    want = oracle_bars(trades, "1min")
    assert_bars_equal(got, want, "bars after two rebalances")

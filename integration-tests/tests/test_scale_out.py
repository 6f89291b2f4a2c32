"""Scale-out that loses nothing: a feed hash-partitions trades into three Redis streams,
three ``mdp run`` workers (one per stream) resample them into PostgreSQL, and two workers
are killed with SIGKILL mid-run: one comes back under its own name, the other is replaced
by a new consumer that claims (XAUTOCLAIM) what the dead one left pending. The bars in
PostgreSQL equal pandas' over the whole input: none missing, none extra, none partial."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis.asyncio as aioredis
from harness import assert_bars_equal, oracle_bars, stored_bars, write_yaml

from market_data_core.testing.servers import RedisServer, scaled
from market_data_store.testing import PostgresDatabase

PARTITIONS = 3
SYMBOLS = [f"SYM{i}" for i in range(9)]
TRADES = 36_000
FEED_RATE = 3_000  # rows per second: a 12 s feed, so the kills land mid-run
MDP = str(Path(sys.executable).with_name("mdp"))
if not Path(MDP).exists():
    pytest.fail(f"{MDP} is missing: install market-data-pipeline here", pytrace=False)


def make_trades(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    start = pd.Timestamp("2026-03-02 14:30", tz="UTC")
    offsets = np.sort(rng.uniform(0, 90 * 60, TRADES))  # 90 minutes of trades, in order
    frame = pd.DataFrame(
        {
            "symbol": rng.choice(SYMBOLS, TRADES),
            "ts": start + pd.to_timedelta(offsets, unit="s"),
            "price": np.round(100 + rng.normal(0, 1, TRADES).cumsum() * 0.01, 4),
            "size": rng.integers(1, 500, TRADES).astype(float),
        }
    )
    frame["ts"] = frame["ts"].dt.floor("us")
    frame.to_parquet(path, index=False)
    return frame


def feed_config(path: Path, redis_url: str, trades: Path) -> Path:
    nodes = [
        {"id": "tape", "type": "replay", "params": {"path": str(trades), "batch_size": 300}},
        {"id": "pace", "type": "throttle", "params": {"rate": FEED_RATE, "burst": 300}},
        {"id": "split", "type": "hash_partition", "params": {"partitions": PARTITIONS}},
    ]
    edges = ["tape -> pace", "pace -> split"]
    for i in range(PARTITIONS):
        nodes.append(
            {
                "id": f"s{i}",
                "type": "redis_stream",
                "params": {"url": redis_url, "stream": f"ticks:{i}", "maxlen": None},
            }
        )
        edges.append(f"split.p{i} -> s{i}")
    return write_yaml(path, {"name": "feed", "nodes": nodes, "edges": edges})


def worker_config(path: Path, redis_url: str, dsn: str, partition: int, consumer: str) -> Path:
    nodes = [
        {
            "id": "ticks",
            "type": "redis_stream",
            "params": {
                "url": redis_url,
                "stream": f"ticks:{partition}",
                "group": "bars",
                "consumer": consumer,
                "count": 2,
                "idle_stop": scaled(6.0),
                "claim_idle": 1.0,
            },
        },
        {"id": "m1", "type": "resample_ohlc", "params": {"timeframe": "1m", "source": "scale"}},
        {"id": "store", "type": "store", "params": {"database": dsn}},
    ]
    config = {"name": f"worker-{consumer}", "nodes": nodes, "edges": ["ticks -> m1", "m1 -> store"]}
    return write_yaml(path, config)


class Processes:
    """Every process the test starts, killed and reaped whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, config: Path) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        env = {**os.environ, "MDP_LOG_LEVEL": "info"}
        proc = subprocess.Popen([MDP, "run", str(config)], stdout=log, stderr=log, env=env)
        log.close()
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


async def pending(client: aioredis.Redis, partition: int, consumer: str) -> int:
    try:
        rows = await client.xpending_range(f"ticks:{partition}", "bars", "-", "+", 10_000)
    except aioredis.ResponseError:  # no group yet
        return 0
    return sum(1 for r in rows if r["consumer"].decode() == consumer)


async def delivered(client: aioredis.Redis, partition: int) -> int:
    """Entries of the partition's stream the group has delivered to a worker."""
    stream = f"ticks:{partition}"
    try:
        groups = await client.xinfo_groups(stream)
    except aioredis.ResponseError:  # no stream yet
        return 0
    if not groups:
        return 0
    last = groups[0]["last-delivered-id"]
    return 0 if last in (b"0-0", "0-0") else len(await client.xrange(stream, "-", last))


@pytest.mark.asyncio
@pytest.mark.slow
async def test_workers_killed_mid_run_leave_the_bars_exactly_as_pandas_makes_them(
    postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    trades = make_trades(tmp_path / "trades.parquet")
    with RedisServer() as redis_server:
        url = redis_server.url
        client = aioredis.Redis.from_url(url)
        procs = Processes(tmp_path)
        try:
            configs = {
                name: worker_config(tmp_path / f"{name}.yaml", url, postgres_database.dsn, p, name)
                for p, name in enumerate(["w0", "w1", "w2"])
            }
            workers = {name: procs.start(name, config) for name, config in configs.items()}
            started = time.monotonic()
            feed = procs.start(
                "feed", feed_config(tmp_path / "feed.yaml", url, tmp_path / "trades.parquet")
            )

            # kill w0 once it has read a good part of its stream (the feed still running)
            async def w0_mid_run() -> bool:
                return await delivered(client, 0) >= 12

            await until_async(w0_mid_run, "worker w0 to read 12 entries", procs, workers)
            assert feed.poll() is None, "the feed ended before the first kill: not mid-run"
            held_w0 = await pending(client, 0, "w0")
            workers["w0"].send_signal(signal.SIGKILL)
            workers["w0"].wait(timeout=30)
            workers["w0"] = procs.start("w0", configs["w0"])  # back under its own name

            async def w1_mid_run() -> bool:
                return await delivered(client, 1) >= 30

            await until_async(w1_mid_run, "worker w1 to read 30 entries", procs, workers)
            assert feed.poll() is None, "the feed ended before the second kill: not mid-run"
            held_w1 = await pending(client, 1, "w1")
            workers["w1"].send_signal(signal.SIGKILL)
            workers["w1"].wait(timeout=30)
            replacement = worker_config(
                tmp_path / "w1b.yaml", url, postgres_database.dsn, 1, "w1-b"
            )
            workers["w1-b"] = procs.start("w1-b", replacement)  # a new consumer takes over
            del workers["w1"]

            assert await asyncio.to_thread(feed.wait, scaled(120)) == 0, procs.log("feed")
            for name, proc in workers.items():
                code = await asyncio.to_thread(proc.wait, scaled(120))
                assert code == 0, f"worker {name} exited {code}:\n{procs.log(name)}"
            seconds = time.monotonic() - started
            assert await pending(client, 1, "w1") == 0, "the dead w1's entries were never claimed"
            assert "claimed" in procs.log("w1-b")
        finally:
            procs.close()
            await client.aclose()

    got = await stored_bars(postgres_database.dsn, "1m", source="scale")
    want = oracle_bars(trades, "1min")
    print(
        f"\n{TRADES} trades over {PARTITIONS} partitions in {seconds:.1f} s; w0 killed holding"
        f" {held_w0} unacknowledged entries, w1 holding {held_w1}; {len(got)} bars stored"
    )
    assert_bars_equal(got, want, "bars after two workers were killed")


async def until_async(
    predicate,
    what: str,
    procs: Processes,
    workers: dict[str, subprocess.Popen[bytes]],
    limit: float = 60.0,
) -> None:
    """``harness.until`` for a coroutine predicate; a worker that exits meanwhile fails the
    wait at once, with its log."""
    deadline = time.monotonic() + scaled(limit)
    while not await predicate():
        for name, proc in workers.items():
            code = proc.poll()
            assert code is None, (
                f"waiting for {what}: worker {name} exited {code}:\n{procs.log(name)}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)

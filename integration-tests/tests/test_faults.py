"""Faults across the real platform, each with its figures printed: real processes, a real
PostgreSQL and a real Redis, nothing mocked.

1. ``kill -9`` of the store service during an ingest over HTTP, restarted on the same port:
   the pipeline's retries finish the job; the trades in PostgreSQL are exactly the input
   (none lost, none twice) and every row the service acknowledged survived the crash.
2. PostgreSQL down for 20 s under an orchestrated job: the store's /readyz turns 503, the
   orchestrator pauses the job, both recover, the job completes with exactly the bars of
   an undisturbed run.
3. Redis down for 20 s between the store's feedback and a pipeline held at soft
   backpressure: the pipeline keeps running at the held (reduced) rate, never full speed;
   after the restart the feedback flows again and the rate follows it.
4. ``kill -9`` of a supervised replay job: the orchestrator restarts it, the replay starts
   over and its idempotent writes leave exactly the bars of an undisturbed run.
"""

import asyncio
import contextlib
import json
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis.asyncio as aioredis
from harness import until
from pydantic import SecretStr

from market_data_core import BackpressureLevel, Bar, FeedbackEvent
from market_data_core.testing.servers import RedisServer, scaled
from market_data_core.transports import wire
from market_data_orchestrator.deployment import load_deployment
from market_data_orchestrator.jobs import JobState
from market_data_orchestrator.orchestrator import STORE_HEALTH, Orchestrator
from market_data_pipeline import UnifiedRuntime, UnifiedRuntimeSettings
from market_data_store.settings import StoreSettings
from market_data_store.store import Store
from market_data_store.testing import PostgresDatabase, PostgresServer, StoreService

START = datetime(2000, 1, 1, tzinfo=UTC)
END = datetime(2100, 1, 1, tzinfo=UTC)
OUTAGE = 20.0
"""Seconds PostgreSQL (test 2) and Redis (test 3) stay down."""


async def _fetch(postgres: PostgresDatabase | PostgresServer, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(postgres.url.asyncpg_dsn())
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


async def _bars(database: str, timeframe: str = "1m") -> list[tuple[Any, ...]]:
    """Every bar of a timeframe in a store (PostgreSQL or SQLite), as sorted tuples of all
    its fields."""
    async with Store(StoreSettings(database_url=SecretStr(database))) as store:
        symbols = {f.symbol for f in await store.freshness() if f.table == "bars"}
        bars = []
        for symbol in sorted(symbols):
            bars += await store.query_bars(symbol, timeframe, START, END, limit=100_000)
    return sorted(tuple(bar.model_dump().values()) for bar in bars)


async def _expected_bars(graph: dict[str, Any], tmp_path: Path) -> list[tuple[Any, ...]]:
    """The same deterministic job, undisturbed, in process into SQLite."""
    database = f"sqlite:///{tmp_path / 'expected.db'}"
    settings = UnifiedRuntimeSettings.load(None, database_url=SecretStr(database))
    async with UnifiedRuntime(settings) as rt:
        await rt.run(graph)
    return await _bars(database)


def _bar_differences(
    stored: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]
) -> tuple[int, int, int]:
    """Bars expected but not stored, stored beyond the expected (a key twice, or unknown),
    and stored with other values. Every field must be equal except the vwap, a ratio of
    sums whose last bits depend on how the trades were cut into batches (a paced replay
    cuts them by time): it must agree to 12 digits."""
    want = {bar[:4]: bar for bar in expected}
    keys = Counter(bar[:4] for bar in stored)
    missing = sum(1 for key in want if key not in keys)
    extra = sum(n - 1 for n in keys.values()) + sum(1 for key in keys if key not in want)
    differing = sum(1 for bar in stored if bar[:4] in want and not _same_bar(bar, want[bar[:4]]))
    return missing, extra, differing


_VWAP = list(Bar.model_fields).index("vwap")


def _same_bar(got: tuple[Any, ...], want: tuple[Any, ...]) -> bool:
    vwaps = got[_VWAP], want[_VWAP]
    same_vwap = vwaps[0] == vwaps[1] or (
        None not in vwaps and math.isclose(vwaps[0], vwaps[1], rel_tol=1e-12)
    )
    others = [i for i in range(len(got)) if i != _VWAP]
    return [got[i] for i in others] == [want[i] for i in others] and same_vwap


def _missing_and_extra(stored: list[Any], expected: list[Any]) -> tuple[int, int]:
    """Rows of ``expected`` not stored, and rows stored beyond ``expected`` (duplicates or
    strangers), counted as multisets."""
    have, want = Counter(stored), Counter(expected)
    return sum((want - have).values()), sum((have - want).values())


# -- 1. kill -9 of the store service during an ingest --------------------------------------

TRADES = 120_000


def _trades(sink: dict[str, Any], *, rate: float | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "kind": "trades",
        "symbols": 4,
        "seed": 17,
        "count": TRADES,
        "batch_size": 4_000,
        "duration": "2h",
    }
    if rate is not None:
        params["rate"] = rate
    return {
        "name": "ingest",
        "nodes": [{"id": "trades", "type": "synthetic", "params": params}, sink],
        "edges": ["trades -> " + sink["id"]],
    }


async def _input_trades(tmp_path: Path) -> list[tuple[str, int, float, float]]:
    """The trades the job emits (times in nanoseconds), written to a Parquet file by the same
    provider."""
    path = tmp_path / "input.parquet"
    graph = _trades({"id": "tape", "type": "file", "params": {"path": str(path)}})
    async with UnifiedRuntime(UnifiedRuntimeSettings.load(None)) as rt:
        await rt.run(graph)
    table = pq.read_table(path, columns=["symbol", "ts", "price", "size"])
    nanos = table["ts"].cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    columns = (table["symbol"], nanos, table["price"], table["size"])
    return list(zip(*(column.to_pylist() for column in columns), strict=True))


async def _stored_trades(
    postgres: PostgresDatabase | PostgresServer,
) -> list[tuple[str, int, float, float]]:
    """Every stored trade, its time in nanoseconds (microseconds and ``ts_nanos``)."""
    rows = await _fetch(
        postgres,
        "SELECT symbol, (extract(epoch FROM ts) * 1000000)::bigint * 1000 + ts_nanos AS ns,"
        " price, size FROM trades",
    )
    return [(r["symbol"], r["ns"], r["price"], r["size"]) for r in rows]


@pytest.mark.asyncio
async def test_kill_9_of_the_store_during_ingest_loses_and_duplicates_nothing(
    postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    service = StoreService(tmp_path, database_url=postgres_database.dsn)
    with service:
        sink = {
            "id": "store",
            "type": "store",
            "params": {"url": service.url, "http_batch": 2_000, "attempts": 20},
        }
        graph = _trades(sink, rate=12_000)  # about 10 s of ingest
        async with UnifiedRuntime(UnifiedRuntimeSettings.load(None)) as rt:
            started = time.monotonic()
            job = asyncio.create_task(rt.run(graph))

            def acknowledged() -> int:
                runtime = rt.current
                return runtime.stats["store"].counters.get("acknowledged", 0) if runtime else 0

            await until(lambda: acknowledged() >= TRADES // 3 or job.done(), "a third ingested")
            assert not job.done(), "the ingest ended before the store could be killed"
            acked_at_kill = acknowledged()
            killed_after = time.monotonic() - started
            service.kill()
            committed_at_kill = (await _fetch(postgres_database, "SELECT count(*) FROM trades"))[0][
                0
            ]
            await asyncio.sleep(1.5)
            restarting = time.monotonic()
            await asyncio.to_thread(service.start)
            restart_seconds = time.monotonic() - restarting
            result = await asyncio.wait_for(job, scaled(120))
    stored = await _stored_trades(postgres_database)
    expected = await _input_trades(tmp_path)
    missing, extra = _missing_and_extra(stored, expected)
    counters = result.nodes["store"].counters
    retries = counters.get("retries", 0)
    print(
        f"\nstore killed (SIGKILL) {killed_after:.2f} s into the ingest with {acked_at_kill}"
        f" rows acknowledged ({committed_at_kill} committed); restarted in"
        f" {restart_seconds:.2f} s; {retries} retries by the pipeline; trades expected"
        f" {len(expected)}, stored {len(stored)}, missing {missing}, duplicates {extra}"
    )
    assert committed_at_kill >= acked_at_kill, "rows acknowledged before the kill were lost"
    assert retries > 0, "the pipeline never had to retry: the kill missed the ingest"
    assert counters["acknowledged"] == TRADES
    assert (missing, extra) == (0, 0)
    assert len(stored) == len(expected) == TRADES


# -- 2. PostgreSQL down for 20 s under an orchestrated job ---------------------------------


def _writer_graph(sink: dict[str, Any]) -> dict[str, Any]:
    trades = {"symbols": 3, "seed": 5, "count": 60_000, "batch_size": 1_000, "duration": "1h"}
    return {
        "name": "writer",
        "nodes": [
            {"id": "trades", "type": "synthetic", "params": trades},
            {"id": "bars", "type": "resample_ohlc", "params": {"timeframe": "1m"}},
            sink,
        ],
        "edges": ["trades -> bars", "bars -> store"],
    }


def _deployment(tmp_path: Path, job: str, store_url: str, restart: str = "{}") -> Path:
    path = tmp_path / "deployment.yaml"
    path.write_text(
        f"jobs:\n  - {{name: {job}, config: {job}.json, restart: {restart}}}\n"
        f"store: {{url: '{store_url}', poll_interval: 0.2, timeout: 1.0,"
        " unhealthy_after: 2, healthy_after: 2}\n"
        f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
    )
    return path


class _Readiness:
    """Polls a store's /readyz in the background and keeps when its answer changed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.changes: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    def since(self, status: int, t0: float) -> Callable[[], bool]:
        """Whether /readyz turned to ``status`` after ``t0`` (monotonic seconds)."""
        return lambda: self.when(status, t0) is not None

    def when(self, status: int, t0: float) -> float | None:
        """Seconds from ``t0`` until /readyz first turned to ``status`` after it."""
        return next((t - t0 for t, s in self.changes if t > t0 and s == status), None)

    async def _poll(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    status = (await client.get("/readyz")).status_code
                    if not self.changes or self.changes[-1][1] != status:
                        self.changes.append((time.monotonic(), status))
                await asyncio.sleep(0.05)

    async def __aenter__(self) -> "_Readiness":
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.mark.asyncio
async def test_postgres_down_20_s_pauses_the_job_and_it_completes_with_every_bar(
    private_postgres_server: PostgresServer, tmp_path: Path
) -> None:
    # The store's defaults: a batch in flight when PostgreSQL goes away outlives its 5
    # attempts (MDS_ON_OUTAGE=hold) and is written when the database is back, instead of
    # going to the dead-letter file. The sink's 30 HTTP attempts outlast the outage too.
    env = {"MDS_HEALTH_INTERVAL": "0.2"}
    with StoreService(tmp_path, database_url=private_postgres_server.dsn, env=env) as service:
        sink = {"id": "store", "type": "store", "params": {"url": service.url, "attempts": 30}}
        graph = _writer_graph(sink)
        graph["nodes"][0]["params"]["rate"] = 4_000  # about 15 s of trades
        (tmp_path / "writer.json").write_text(json.dumps(graph))
        deployment = load_deployment(_deployment(tmp_path, "writer", service.url))
        async with Orchestrator(deployment) as orch, _Readiness(service.url) as ready:
            job = lambda: orch.supervisor.job("writer")  # noqa: E731
            await until(lambda: job().state is JobState.RUNNING, "the job to run")
            await asyncio.sleep(1.0)  # let it write for a while
            stopped_at = time.monotonic()
            await asyncio.to_thread(private_postgres_server.stop)
            await until(ready.since(503, stopped_at), "/readyz to answer 503")
            to_503 = ready.when(503, stopped_at)
            await until(lambda: job().paused_by == STORE_HEALTH, "the job to be paused")
            to_pause = time.monotonic() - stopped_at
            assert job().state is JobState.PAUSED
            await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))
            started_at = time.monotonic()
            await asyncio.to_thread(private_postgres_server.start)
            down = started_at - stopped_at
            await until(ready.since(200, started_at), "/readyz to answer 200 again")
            to_200 = ready.when(200, started_at)
            await until(lambda: job().paused_by is None, "the job to be resumed")
            to_resume = time.monotonic() - started_at
            await until(lambda: job().state is JobState.COMPLETED, "completion", limit=120)
            restarts = job().restarts
            audit = await orch.audit.read(50)
    dead_letters = tmp_path / "service.dlq.ndjson"  # StoreService's MDS_DEAD_LETTER_PATH
    dead_lettered = len(dead_letters.read_text().splitlines()) if dead_letters.exists() else 0
    stored = await _bars(private_postgres_server.dsn)
    undisturbed = _writer_graph({"id": "store", "type": "store"})  # into SQLite, in process
    expected = await _expected_bars(undisturbed, tmp_path)
    missing, extra, differing = _bar_differences(stored, expected)
    actions = [(a.actor, a.action, a.target) for a in audit]
    print(
        f"\nPostgreSQL down {down:.1f} s: /readyz 503 after {to_503:.2f} s, job paused after"
        f" {to_pause:.2f} s; back: /readyz 200 after {to_200:.2f} s, job resumed after"
        f" {to_resume:.2f} s; job restarts {restarts}; bars expected {len(expected)}, stored"
        f" {len(stored)}, missing {missing}, duplicates {extra}, different {differing};"
        f" dead-lettered batches {dead_lettered}"
    )
    assert dead_lettered == 0, "the outage sent batches to the dead-letter file"
    assert (STORE_HEALTH, "pause", "writer") in actions
    assert (STORE_HEALTH, "resume", "writer") in actions
    assert (missing, extra, differing) == (0, 0, 0)
    assert len(stored) == len(expected) > 0


# -- 3. Redis down for 20 s between the store's feedback and a slowed pipeline ------------

FULL_RATE = 1_000.0
"""Records/s of the pipeline at full speed (its controller's ``base_rate``)."""


async def _feedback_in_redis(url: str) -> list[FeedbackEvent]:
    client = aioredis.Redis.from_url(url)
    try:
        entries = await client.xrange("md:feedback")
    finally:
        await client.aclose()
    messages = (wire.decode(fields).message for _, fields in entries)
    return [m for m in messages if isinstance(m, FeedbackEvent) and m.coordinator_id == "store"]


async def _rate(items: Callable[[], int], seconds: float = 2.0) -> float:
    before, started = items(), time.monotonic()
    await asyncio.sleep(seconds)
    return (items() - before) / (time.monotonic() - started)


async def _drained(
    postgres: PostgresDatabase | PostgresServer, table: str, rows: int, limit: float = 60
) -> int:
    """The rows of ``table`` once it holds ``rows`` (the store's queue has drained), or
    what it holds after ``limit`` seconds (scaled)."""
    deadline = time.monotonic() + scaled(limit)
    while True:
        stored = int((await _fetch(postgres, f"SELECT count(*) AS n FROM {table}"))[0]["n"])
        if stored >= rows or time.monotonic() > deadline:
            return stored
        await asyncio.sleep(0.2)


@pytest.mark.asyncio
async def test_redis_down_20_s_holds_the_slowed_rate_and_feedback_resumes(
    postgres_database: PostgresDatabase, private_redis_server: RedisServer, tmp_path: Path
) -> None:
    """The store's writes are held up by a lock (as by a long maintenance transaction): its
    queue fills to soft backpressure and the pipeline slows to half speed. Then Redis, which
    carries the feedback, goes away for 20 s."""
    env = {
        "MDS_REDIS_URL": private_redis_server.url,
        "MDS_ACK": "queued",
        "MDS_QUEUE_CAPACITY": "50000",
        "MDS_SOFT_WATERMARK": "0.05",
        "MDS_LOW_WATERMARK": "0.02",
        "MDS_HIGH_WATERMARK": "0.9",
        "MDS_HEARTBEAT_INTERVAL": "0.5",
        "MDS_WORKERS": "1",
        "MDS_BATCH_SIZE": "500",
    }
    params = {"kind": "trades", "symbols": 4, "seed": 23, "count": 500_000, "batch_size": 100}
    settings = UnifiedRuntimeSettings.load(
        None,
        redis_url=SecretStr(private_redis_server.url),
        base_rate=FULL_RATE,
        soft_scale=0.5,
        coordinator_id="store",
    )
    with StoreService(tmp_path, database_url=postgres_database.dsn, env=env) as service:
        sink = {"id": "store", "type": "store", "params": {"url": service.url, "attempts": 30}}
        graph = {
            "name": "held",
            "nodes": [{"id": "trades", "type": "synthetic", "params": params}, sink],
            "edges": ["trades -> store"],
        }
        async with UnifiedRuntime(settings) as rt:
            job = asyncio.create_task(rt.run(graph))

            def items() -> int:
                runtime = rt.current
                return runtime.stats["trades"].items_out if runtime is not None else 0

            def alive() -> None:
                assert not job.done(), f"the pipeline ended: {job.exception()!r}"
                assert service.process is not None
                assert service.process.poll() is None, "the store service crashed"

            await until(
                lambda: rt.controller is not None and rt.controller.level is BackpressureLevel.OK,
                "the store's first feedback to reach the pipeline",
            )
            controller = rt.controller
            full = await _rate(items)
            lock = await asyncpg.connect(postgres_database.url.asyncpg_dsn())
            locked = lock.transaction()
            await locked.start()
            await lock.execute("LOCK TABLE trades IN EXCLUSIVE MODE")
            await until(lambda: controller.scale < 1.0, "soft feedback to slow the pipeline")
            held_scale = controller.scale
            slowed = await _rate(items)
            seq_before = max(e.seq for e in await _feedback_in_redis(private_redis_server.url))

            await asyncio.to_thread(private_redis_server.stop)
            stopped_at, items_at_stop = time.monotonic(), items()
            scales, stale = set(), False
            while (elapsed := time.monotonic() - stopped_at) < OUTAGE:
                alive()
                scales.add(controller.scale)
                stale = stale or controller.stale
                await asyncio.sleep(0.25)
            during = (items() - items_at_stop) / elapsed
            alive()

            accepted = controller.accepted
            await asyncio.to_thread(private_redis_server.start)
            restarted_at = time.monotonic()
            await until(
                lambda: controller.accepted > accepted and not controller.stale,
                "fresh feedback from the restarted Redis to reach the pipeline",
            )
            to_feedback = time.monotonic() - restarted_at
            await locked.rollback()
            await lock.close()
            await until(lambda: controller.scale == 1.0, "ok feedback to restore full speed")
            after = await _rate(items)
            alive()
            fresh = await _feedback_in_redis(private_redis_server.url)
            await rt.stop(drain=True)
            await asyncio.wait_for(job, scaled(60))
            assert rt.last_result is not None
            emitted = rt.last_result.nodes["trades"].items_out
        stored = await _drained(postgres_database, "trades", emitted)
    print(
        f"\nRedis down {OUTAGE:.0f} s: pipeline {full:.0f} rec/s at full speed, {slowed:.0f} at"
        f" soft (scale {held_scale}); during the outage {during:.0f} rec/s at scale"
        f" {sorted(scales)} (unknown state after the TTL: {stale}); feedback back"
        f" {to_feedback:.2f} s after the restart ({len(fresh)} events in the new stream, seq"
        f" {seq_before} -> {max(e.seq for e in fresh)}); after {after:.0f} rec/s;"
        f" {stored} of {emitted} trades stored"
    )
    assert held_scale < 1.0
    assert scales == {held_scale}, "the rate changed while the feedback was silent"
    assert stale, "the controller never reported the silence as unknown"
    assert during > 0, "the pipeline stopped while Redis was down"
    assert any(e.seq > seq_before and e.level is BackpressureLevel.OK for e in fresh)
    assert stored == emitted


# -- 4. kill -9 of a supervised replay job --------------------------------------------------


def _replay_graph(path: Path, sink: dict[str, Any], speed: float = 0.0) -> dict[str, Any]:
    replay = {"path": str(path), "kind": "trades", "speed": speed, "batch_size": 2_000}
    return {
        "name": "replayer",
        "nodes": [
            {"id": "trades", "type": "replay", "params": replay},
            {"id": "bars", "type": "resample_ohlc", "params": {"timeframe": "1m"}},
            sink,
        ],
        "edges": ["trades -> bars", "bars -> store"],
    }


async def _replay_file(tmp_path: Path) -> Path:
    """An hour of synthetic trades of 3 symbols, written to Parquet for the job to replay."""
    path = tmp_path / "tape.parquet"
    params = {"symbols": 3, "seed": 31, "count": 60_000, "duration": "1h"}
    graph = {
        "name": "tape",
        "nodes": [
            {"id": "trades", "type": "synthetic", "params": params},
            {"id": "file", "type": "file", "params": {"path": str(path)}},
        ],
        "edges": ["trades -> file"],
    }
    async with UnifiedRuntime(UnifiedRuntimeSettings.load(None)) as rt:
        await rt.run(graph)
    return path


@pytest.mark.asyncio
async def test_kill_9_of_a_replay_job_restarts_it_and_the_bars_are_exact(
    postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    tape = await _replay_file(tmp_path)
    with StoreService(tmp_path, database_url=postgres_database.dsn) as service:
        sink = {"id": "store", "type": "store", "params": {"url": service.url}}
        graph = _replay_graph(tape, sink, speed=300)  # the hour in about 12 s
        (tmp_path / "replayer.json").write_text(json.dumps(graph))
        restart = "{backoff_initial: 0.2, backoff_max: 1.0}"
        deployment = load_deployment(_deployment(tmp_path, "replayer", service.url, restart))
        async with Orchestrator(deployment) as orch:
            job = lambda: orch.supervisor.job("replayer")  # noqa: E731

            def emitted() -> int:
                progress = orch.supervisor.progress("replayer")
                return progress.emitted if progress is not None else 0

            await until(lambda: job().state is JobState.RUNNING, "the job to run")
            await until(lambda: emitted() >= 20_000, "a third of the replay")
            replica = job().replicas[0]
            assert replica.pid is not None
            assert replica.restarts == 0
            bars_at_kill = (await _fetch(postgres_database, "SELECT count(*) AS n FROM bars"))[0][
                "n"
            ]
            killed_at = time.monotonic()
            os.kill(replica.pid, signal.SIGKILL)
            await until(lambda: job().restarts == 1, "the orchestrator to restart the job")
            exit_code, why = job().replicas[0].last_exit_code, job().last_error
            await until(lambda: job().state is JobState.RUNNING, "the restarted job to run")
            to_running = time.monotonic() - killed_at
            await until(lambda: job().state is JobState.COMPLETED, "completion", limit=120)
            final = job()
    stored = await _bars(postgres_database.dsn)
    expected = await _expected_bars(_replay_graph(tape, {"id": "store", "type": "store"}), tmp_path)
    missing, extra, differing = _bar_differences(stored, expected)
    print(
        f"\nreplay job killed (SIGKILL, pid {replica.pid}) with {bars_at_kill} bars written;"
        f" the orchestrator saw exit code {exit_code} ({why}), restarted it, running again after"
        f" {to_running:.2f} s; restarts {final.restarts}; bars expected {len(expected)},"
        f" stored {len(stored)}, missing {missing}, duplicates {extra}, different {differing}"
    )
    assert exit_code == -signal.SIGKILL
    assert final.restarts == 1
    assert final.replicas[0].pid != replica.pid
    assert bars_at_kill > 0, "the job was killed before it wrote anything"
    assert (missing, extra, differing) == (0, 0, 0)
    assert len(stored) == len(expected) > 0

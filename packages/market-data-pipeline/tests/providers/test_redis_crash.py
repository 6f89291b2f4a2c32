"""Redis killed (SIGKILL) under a running feed and worker (issue 24, item 4).

With its append-only file fsynced before each reply, Redis comes back with everything it
acknowledged: the feed (``redis_stream`` sink) and the worker (``redis_stream`` provider)
reconnect and the bars are exactly those of a run without the crash. Without persistence
Redis comes back empty: the worker says entries were lost (a metric, an error, health
degraded, ``DataLossError``, ``mdp run`` exit 3), whether it was running or started after.

Real servers only; waits are bounded by ``scaled`` deadlines, never by sleeping.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis.asyncio as aioredis
import yaml
from typer.testing import CliRunner

from market_data_core import HealthState
from market_data_core.testing.servers import RedisServer, scaled
from market_data_pipeline.cli import app
from market_data_pipeline.components import Params, Provider
from market_data_pipeline.exceptions import DataLossError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.job import UnifiedRuntime
from market_data_pipeline.metrics import PipelineMetrics
from market_data_pipeline.providers.synthetic import SyntheticParams, SyntheticProvider
from market_data_pipeline.registry import Registry
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.settings import UnifiedRuntimeSettings
from market_data_pipeline.testing import collect, eventually, registry_with_fakes

pytestmark = pytest.mark.redis

TICKS = SyntheticParams(symbols=4, count=6000, batch_size=50, duration="30m", seed=7)
"""120 batches (stream entries) of trades over 30 minutes of event time: 1-minute bars."""
HALF = 60
"""The feed waits behind this many batches until the test has killed Redis."""


def ticks() -> list[pa.Table]:
    return list(SyntheticProvider("gen", TICKS).tables())


class GatedParams(Params):
    name: str


class GatedProvider(Provider[GatedParams]):
    """Emits the tables under ``name``; before batch ``HALF`` waits for the test's gate."""

    inputs: ClassVar[dict[str, list[pa.Table]]] = {}
    gates: ClassVar[dict[str, asyncio.Event]] = {}
    reached: ClassVar[dict[str, asyncio.Event]] = {}
    Params = GatedParams

    async def batches(self) -> AsyncIterator[pa.Table]:
        name = self.params.name
        for i, batch in enumerate(self.inputs[name]):
            if i == HALF:
                self.reached[name].set()
                await self.gates[name].wait()
            yield batch


def registry() -> Registry:
    registry = registry_with_fakes()
    registry.register("gated", GatedProvider)
    return registry


def gated(name: str) -> tuple[asyncio.Event, asyncio.Event]:
    """The tables of ``TICKS`` under ``name``: (reached the gate, open the gate)."""
    GatedProvider.inputs[name] = ticks()
    GatedProvider.reached[name] = asyncio.Event()
    GatedProvider.gates[name] = asyncio.Event()
    return GatedProvider.reached[name], GatedProvider.gates[name]


def feed_graph(url: str, name: str) -> Graph:
    return Graph.build(
        [node("src", "gated", name=name), node("bus", "redis_stream", url=url, stream="ticks")],
        ["src -> bus"],
        name="feed",
    )


def worker_graph(url: str, state_dir: Path) -> Graph:
    return Graph.build(
        [
            node(
                "ticks",
                "redis_stream",
                url=url,
                stream="ticks",
                consumer="w1",
                block_ms=100,
                state_dir=str(state_dir),
            ),
            node("bars", "resample_ohlc", timeframe="1m"),
            node("out", "collect"),
            node("seen", "collect"),
        ],
        ["ticks -> bars", "bars -> out", "ticks -> seen"],
        name="worker",
    )


async def run_model() -> pa.Table:
    """The bars of the same ticks straight through the resampler (no Redis, no crash)."""
    graph = Graph.build(
        [
            node("src", "gated", name="model"),
            node("bars", "resample_ohlc", timeframe="1m"),
            node("model", "collect"),
        ],
        ["src -> bars", "bars -> model"],
        name="worker",  # the bars' source
    )
    gated("model")[1].set()
    await asyncio.wait_for(GraphRuntime(graph, registry=registry()).run(), scaled(60))
    table = collect("model")
    assert table is not None
    return sorted_bars(table)


def sorted_bars(table: pa.Table) -> pa.Table:
    return table.sort_by([("symbol", "ascending"), ("start", "ascending")])


async def group_lag(url: str) -> int | None:
    client = aioredis.Redis.from_url(url)
    try:
        (group,) = await client.xinfo_groups("ticks")
        return None if group["lag"] is None else int(group["lag"])
    except Exception:  # not there yet
        return None
    finally:
        await client.aclose()


async def until(predicate: Any, seconds: float) -> None:
    async with asyncio.timeout(scaled(seconds)):
        await eventually(predicate)


async def until_async(check: Any, seconds: float) -> None:
    """Wait until ``await check()`` is true (polled; for state held by Redis)."""
    async with asyncio.timeout(scaled(seconds)):
        while not await check():  # noqa: ASYNC110 - Redis has no event to wait on
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def redis(*, appendonly: bool) -> Iterator[RedisServer]:
    with RedisServer(appendonly=appendonly, appendfsync="always") as server:
        yield server


def counter(metrics: PipelineMetrics, name: str, **labels: str) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def crash(server: RedisServer, reached: asyncio.Event, gate: asyncio.Event) -> None:
    """Once the feed wrote half of the ticks: SIGKILL Redis, let the feed go on (into the
    outage), start Redis again on the same port and directory."""
    await asyncio.wait_for(reached.wait(), scaled(60))
    server.kill()
    gate.set()
    await asyncio.to_thread(server.start)


@pytest.mark.asyncio
async def test_redis_killed_with_aof_feed_and_worker_resume_and_every_bar_is_exact(
    tmp_path: Path,
) -> None:
    model = await run_model()
    rows = sum(t.num_rows for t in ticks())
    with redis(appendonly=True) as server:
        reached, gate = gated("aof")
        metrics = PipelineMetrics()
        feed = GraphRuntime(feed_graph(server.url, "aof"), registry=registry(), metrics=metrics)
        worker = GraphRuntime(
            worker_graph(server.url, tmp_path), registry=registry(), metrics=metrics
        )
        feeding = asyncio.create_task(feed.run())
        working = asyncio.create_task(worker.run())
        try:
            # the worker has acknowledged entries and holds others (the open minute)
            await until(lambda: worker.stats["ticks"].counters.get("acked", 0) >= 5, 60)
            await crash(server, reached, gate)
            feed_result = await asyncio.wait_for(feeding, scaled(120))
            await until(lambda: worker.stats["seen"].items_in >= rows, 120)
            await worker.stop(drain=True)
            result = await asyncio.wait_for(working, scaled(60))
        finally:
            for task in (feeding, working):
                task.cancel()
            await asyncio.gather(feeding, working, return_exceptions=True)

    # both ends lived through the outage and reconnected
    assert feed_result.nodes["bus"].counters["reconnects"] >= 1
    assert result.nodes["ticks"].counters["reconnects"] >= 1
    assert counter(metrics, "pipeline_redis_reconnects_total", node="bus") >= 1
    assert counter(metrics, "pipeline_redis_reconnects_total", node="ticks") >= 1
    assert "losses" not in result.nodes["ticks"].counters
    # every tick exactly once, every bar as without the crash
    seen = collect("seen")
    assert seen is not None
    assert seen.num_rows == rows
    assert pc.count_distinct(seen.column("trade_id")).as_py() == rows
    bars = collect("out")
    assert bars is not None
    assert sorted_bars(bars).equals(model)


@pytest.mark.asyncio
async def test_redis_restarted_without_persistence_the_running_worker_reports_the_loss(
    tmp_path: Path,
) -> None:
    with redis(appendonly=False) as server:
        reached, gate = gated("lost")
        metrics = PipelineMetrics()
        feed = GraphRuntime(feed_graph(server.url, "lost"), registry=registry())
        settings = UnifiedRuntimeSettings(state_dir=tmp_path)
        async with UnifiedRuntime(settings, registry=registry(), metrics=metrics) as runtime:
            feeding = asyncio.create_task(feed.run())
            working = asyncio.create_task(runtime.run(worker_graph(server.url, tmp_path)))
            try:
                await crash(server, reached, gate)
                await asyncio.wait_for(feeding, scaled(120))

                async def everything_read() -> bool:
                    return await group_lag(server.url) == 0

                await until_async(everything_read, 120)
                await until(lambda: runtime.losses != [], 60)
                assert runtime.health().state is HealthState.DEGRADED
                await runtime.stop(drain=True)
                with pytest.raises(DataLossError) as info:
                    await asyncio.wait_for(working, scaled(60))
            finally:
                for task in (feeding, working):
                    task.cancel()
                await asyncio.gather(feeding, working, return_exceptions=True)

    message = str(info.value)
    assert "data was lost upstream" in message
    assert "redis stream ticks (group md-pipeline, consumer w1)" in message
    assert "the stream and its consumer group are gone" in message or "group is gone" in message
    assert counter(metrics, "pipeline_redis_stream_losses_total", reason="group_vanished") == 1
    assert info.value.result.nodes["ticks"].counters["losses"] == 1
    # what the feed wrote after the restart was read: the job went on
    assert info.value.result.nodes["seen"].items_in > 0
    assert runtime.health().state is HealthState.DEGRADED


async def add(url: str, tables: list[pa.Table]) -> None:
    from market_data_pipeline._arrow_ipc import entry

    client = aioredis.Redis.from_url(url)
    try:
        for table in tables:
            await client.xadd("ticks", entry(table))
    finally:
        await client.aclose()


def test_a_worker_started_after_redis_lost_its_entries_exits_3_naming_the_loss(
    tmp_path: Path,
) -> None:
    """The probe's case: Redis restarted empty while entries waited; a worker started
    afterwards finds a stream that no longer holds them. It must not end with 0."""
    batches = ticks()
    config = tmp_path / "worker.yaml"
    state = tmp_path / "state"
    runner = CliRunner()
    with redis(appendonly=False) as server:
        config.write_text(
            yaml.safe_dump(
                {
                    "name": "worker",
                    "nodes": [
                        {
                            "id": "ticks",
                            "type": "redis_stream",
                            "params": {
                                "url": server.url,
                                "stream": "ticks",
                                "consumer": "w1",
                                "idle_stop": 0.3,
                            },
                        },
                        {"id": "out", "type": "null"},
                    ],
                    "edges": ["ticks -> out"],
                }
            )
        )
        env = {"MDP_STATE_DIR": str(state), "MDP_LOG_JSON": "true"}
        asyncio.run(add(server.url, batches[:10]))
        first = runner.invoke(app, ["run", str(config), "--json"], env=env)
        assert first.exit_code == 0, first.output

        asyncio.run(add(server.url, batches[10:20]))  # never read: Redis loses them
        server.kill()
        server.start()
        asyncio.run(add(server.url, batches[20:22]))
        second = runner.invoke(app, ["run", str(config), "--json"], env=env)

    assert second.exit_code == 3, second.output
    assert "data was lost upstream" in second.output
    assert "the group is gone" in second.output
    assert '"ticks"' in second.output  # the summary came first
    assert (state / "redis_stream" / "ticks" / "md-pipeline" / "w1.json").exists()


@pytest.mark.asyncio
async def test_a_stop_while_redis_is_away_ends_the_worker_without_waiting_for_it(
    tmp_path: Path,
) -> None:
    """SIGTERM during an outage: the worker stops retrying, drains what it emitted and
    leaves what it did not acknowledge pending (not 300 s of reconnect_timeout, no error)."""
    with redis(appendonly=True) as server:
        await add(server.url, ticks()[:10])
        worker = GraphRuntime(worker_graph(server.url, tmp_path), registry=registry())
        working = asyncio.create_task(worker.run())
        try:
            await until(lambda: worker.stats["seen"].items_in >= 500, 60)
            server.kill()
            await worker.stop(drain=True)
            result = await asyncio.wait_for(working, scaled(30))
        finally:
            working.cancel()
            await asyncio.gather(working, return_exceptions=True)
        server.start()
        client = aioredis.Redis.from_url(server.url)
        try:
            pending = (await client.xpending("ticks", "md-pipeline"))["pending"]
        finally:
            await client.aclose()
    assert str(result.state) == "stopped"
    assert pending >= 1  # the open minute's entries: delivered again to whoever resumes


@pytest.mark.asyncio
async def test_the_feed_fails_after_reconnect_timeout_naming_the_server_not_its_password(
    tmp_path: Path,
) -> None:
    from market_data_pipeline.exceptions import NodeError, RedisUnavailableError

    with RedisServer(password="hunter2") as server:
        reached, _gate = gated("gone")
        graph = Graph.build(
            [
                node("src", "gated", name="gone"),
                node("bus", "redis_stream", url=server.url, stream="t", reconnect_timeout=0.5),
            ],
            ["src -> bus"],
        )
        feeding = asyncio.create_task(GraphRuntime(graph, registry=registry()).run())
        try:
            await asyncio.wait_for(reached.wait(), scaled(30))
            server.kill()
            _gate.set()
            with pytest.raises(NodeError) as info:
                await asyncio.wait_for(feeding, scaled(30))
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
    assert isinstance(info.value.error, RedisUnavailableError)
    assert f"Redis at redis://127.0.0.1:{server.port}/0 unreachable" in str(info.value)
    assert "hunter2" not in str(info.value)

"""The DAG runtime: fan-out, fan-in, end of stream, errors, stop and cancellation."""

import asyncio
from typing import ClassVar

import pyarrow as pa
import pytest

from market_data_core import BackpressureLevel
from market_data_core.testing import make_feedback_event, make_trade
from market_data_core.testing.servers import scaled
from market_data_pipeline.backpressure import BackpressureController
from market_data_pipeline.components import Emit, NoParams, Operator, Params, SinkComponent
from market_data_pipeline.exceptions import NodeError, RuntimeStateError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.metrics import PipelineMetrics
from market_data_pipeline.runtime import GraphRuntime, RunState
from market_data_pipeline.testing import (
    TestingProvider,
    collect,
    eventually,
    registry_with_fakes,
)


def _trades(n: int, start: float = 1.0) -> list:
    return [make_trade(price=start + i) for i in range(n)]


class Explode(Operator[NoParams]):
    """Fails on the second batch."""

    Params = NoParams
    seen = 0

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        self.seen += 1
        if self.seen == 2:
            raise ValueError("boom on the second batch")
        await emit(batch)


class Stuck(SinkComponent[NoParams]):
    """Never finishes a write: the job can only end by cancellation."""

    Params = NoParams

    async def write(self, batch: pa.Table) -> None:
        await asyncio.Event().wait()


class TickParams(Params):
    interval: float = 0.01


class Ticker(Operator[TickParams]):
    """Emits a marker row on each timer tick (proves timers run while input is idle)."""

    Params = TickParams
    description: ClassVar[str] = "test"

    def __init__(self, node_id: str, params: TickParams) -> None:
        super().__init__(node_id, params)
        self.timer_interval = params.interval
        self.ticks = 0

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        await emit(batch)

    async def on_timer(self, emit: Emit) -> None:
        self.ticks += 1


class Watched(BackpressureController):
    """A rate controller whose waits the test can see (``waiting``: calls in ``acquire``)."""

    waiting = 0

    async def acquire(self, count: int = 1) -> None:
        self.waiting += 1
        try:
            await super().acquire(count)
        finally:
            self.waiting -= 1


def _registry():
    registry = registry_with_fakes()
    registry.register("explode", Explode)
    registry.register("stuck", Stuck)
    registry.register("ticker", Ticker)
    return registry


@pytest.mark.asyncio
async def test_fan_out_gives_every_branch_every_row() -> None:
    TestingProvider.feed("fan", [_trades(3), _trades(2, start=10)])
    graph = Graph.build(
        [node("src", "testing_provider", name="fan"), node("x", "collect"), node("y", "collect")],
        ["src -> x", "src -> y"],
    )
    result = await GraphRuntime(graph, registry=_registry()).run()
    for sink in ("x", "y"):
        table = collect(sink)
        assert table is not None
        assert table.column("price").to_pylist() == [1.0, 2.0, 3.0, 10.0, 11.0]
    assert result.state is RunState.COMPLETED
    assert result.nodes["src"].items_out == 5
    assert result.written == 10


@pytest.mark.asyncio
async def test_a_failing_node_stops_the_job_and_is_named() -> None:
    TestingProvider.feed("many", [_trades(1)] * 50)
    graph = Graph.build(
        [
            node("src", "testing_provider", name="many"),
            node("bad", "explode"),
            node("out", "collect"),
        ],
        ["src -> bad", "bad -> out"],
    )
    runtime = GraphRuntime(graph, registry=_registry(), channel_capacity=1)
    with pytest.raises(NodeError, match="node 'bad' failed: ValueError: boom") as info:
        await asyncio.wait_for(runtime.run(), timeout=scaled(30))
    assert info.value.node_id == "bad"
    assert runtime.state is RunState.FAILED


@pytest.mark.asyncio
async def test_stop_with_drain_delivers_what_was_emitted() -> None:
    TestingProvider.feed("slow", [_trades(1, start=i) for i in range(1000)])
    graph = Graph.build(
        [node("src", "testing_provider", name="slow", delay=0.001), node("out", "collect")],
        ["src -> out"],
    )
    runtime = GraphRuntime(graph, registry=_registry())
    task = asyncio.create_task(runtime.run())
    async with asyncio.timeout(30):
        await eventually(lambda: runtime.stats["src"].items_out >= 5)
    await runtime.stop(drain=True)
    result = await asyncio.wait_for(task, timeout=scaled(30))
    table = collect("out")
    assert table is not None
    assert result.state is RunState.STOPPED
    assert 5 <= table.num_rows < 1000
    assert table.num_rows == result.nodes["src"].items_out  # nothing emitted was lost


@pytest.mark.asyncio
@pytest.mark.parametrize("held", ["hard backpressure", "rate debt"])
async def test_a_stop_ends_a_providers_wait_for_its_rate(held: str) -> None:
    """A provider held by its rate controller (paused under hard backpressure, or owing
    the tokens of a batch larger than its rate) stops at once: it emits nothing more."""
    TestingProvider.feed("held", [_trades(100, start=i) for i in range(5)])
    graph = Graph.build([node("src", "testing_provider", name="held"), node("out", "collect")],
                        ["src -> out"])  # fmt: skip
    if held == "hard backpressure":
        rate = Watched("held")
        await rate.on_feedback(make_feedback_event(level=BackpressureLevel.HARD))
        expected = 0
    else:
        rate = Watched("held", base_rate=1.0)  # 100 s for each batch
        expected = 100
    runtime = GraphRuntime(graph, registry=_registry(), rate=rate)
    task = asyncio.create_task(runtime.run())
    async with asyncio.timeout(30):
        await eventually(lambda: rate.waiting == 1)
    assert runtime.stats["src"].items_out == expected
    await runtime.stop(drain=True)
    result = await asyncio.wait_for(task, timeout=scaled(30))  # never waits for the rate
    assert result.state is RunState.STOPPED
    assert result.nodes["src"].items_out == result.nodes["out"].items_in == expected
    assert (result.cancelled, result.unflushed) == ([], {})  # drained: nothing abandoned


@pytest.mark.asyncio
async def test_a_cancelling_stop_after_a_drain_reports_what_it_abandoned() -> None:
    TestingProvider.feed("many", [_trades(10, start=i) for i in range(20)])
    graph = Graph.build([node("src", "testing_provider", name="many"), node("out", "stuck")],
                        ["src -> out"])  # fmt: skip
    runtime = GraphRuntime(graph, registry=_registry(), channel_capacity=2)
    task = asyncio.create_task(runtime.run())
    async with asyncio.timeout(30):  # two batches queued, one waiting to be put
        await eventually(lambda: runtime.channel_rows().get("out") == 30)
    await runtime.stop(drain=True)
    await runtime.stop(drain=False)  # the drain cannot end: give up on it
    result = await asyncio.wait_for(task, timeout=scaled(30))
    assert result.state is RunState.STOPPED
    assert result.cancelled == ["src", "out"]  # src waits to put its fourth batch
    assert result.unflushed == {"out": 40}  # and the batch in the sink's unfinished write


@pytest.mark.asyncio
async def test_stop_without_drain_cancels_a_stuck_job() -> None:
    TestingProvider.feed("one", [_trades(1)])
    graph = Graph.build(
        [node("src", "testing_provider", name="one"), node("out", "stuck")], ["src -> out"]
    )
    runtime = GraphRuntime(graph, registry=_registry())
    task = asyncio.create_task(runtime.run())
    async with asyncio.timeout(30):
        await eventually(lambda: runtime.stats["out"].items_in >= 1)
    await runtime.stop(drain=False)
    result = await asyncio.wait_for(task, timeout=scaled(30))
    assert result.state is RunState.STOPPED
    assert result.nodes["out"].items_in == 1


@pytest.mark.asyncio
async def test_cancelling_the_run_task_closes_every_node() -> None:
    TestingProvider.feed("one", [_trades(1)])
    graph = Graph.build(
        [node("src", "testing_provider", name="one"), node("out", "stuck")], ["src -> out"]
    )
    runtime = GraphRuntime(graph, registry=_registry())
    closed: list[str] = []
    for component in runtime.components.values():
        original = component.close

        async def close(original=original, name=component.node_id) -> None:
            closed.append(name)
            await original()

        component.close = close  # type: ignore[method-assign]
    task = asyncio.create_task(runtime.run())
    async with asyncio.timeout(30):
        await eventually(lambda: runtime.stats["out"].items_in >= 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(closed) == ["out", "src"]


@pytest.mark.asyncio
async def test_timers_fire_while_input_is_idle() -> None:
    TestingProvider.feed("idle", [_trades(1), _trades(1)])
    graph = Graph.build(
        [
            node("src", "testing_provider", name="idle", delay=0.1),
            node("t", "ticker", interval=0.01),
            node("out", "collect"),
        ],
        ["src -> t", "t -> out"],
    )
    runtime = GraphRuntime(graph, registry=_registry())
    await runtime.run()
    ticker = runtime.components["t"]
    assert isinstance(ticker, Ticker)
    assert ticker.ticks >= 2  # 0.2 s of idle input at a 0.01 s interval


@pytest.mark.asyncio
async def test_a_runtime_runs_once() -> None:
    TestingProvider.feed("once", [_trades(1)])
    graph = Graph.build(
        [node("src", "testing_provider", name="once"), node("out", "collect")], ["src -> out"]
    )
    runtime = GraphRuntime(graph, registry=_registry())
    await runtime.run()
    with pytest.raises(RuntimeStateError, match="already ran"):
        await runtime.run()


@pytest.mark.asyncio
async def test_metrics_count_items_per_node() -> None:
    TestingProvider.feed("m", [_trades(4), _trades(3)])
    graph = Graph.build(
        [node("src", "testing_provider", name="m"), node("mg", "merge"), node("out", "collect")],
        ["src -> mg", "mg -> out"],
        name="metered",
    )
    metrics = PipelineMetrics()
    await GraphRuntime(graph, registry=_registry(), metrics=metrics).run()
    get = metrics.registry.get_sample_value
    assert get("pipeline_node_items_in_total", {"job": "metered", "node": "mg"}) == 7
    assert get("pipeline_node_items_out_total", {"job": "metered", "node": "src"}) == 7
    assert get("pipeline_node_processing_seconds_count", {"job": "metered", "node": "out"}) == 2


@pytest.mark.asyncio
async def test_late_records_reach_the_side_output_and_the_metric() -> None:
    from datetime import timedelta

    from market_data_core.testing import T0

    TestingProvider.feed(
        "late",
        [[make_trade(ts=T0 + timedelta(minutes=3))], [make_trade(ts=T0, price=9.0)]],
    )
    graph = Graph.build(
        [
            node("src", "testing_provider", name="late"),
            node("bars", "resample_ohlc", timeframe="1m"),
            node("out", "collect"),
            node("late_out", "collect"),
        ],
        ["src -> bars", "bars -> out", "bars.late -> late_out"],
        name="lateness",
    )
    metrics = PipelineMetrics()
    result = await GraphRuntime(graph, registry=_registry(), metrics=metrics).run()
    late = collect("late_out")
    assert late is not None
    assert late.column("price").to_pylist() == [9.0]
    assert result.counter("late") == 1
    assert (
        metrics.registry.get_sample_value(
            "pipeline_late_records_total", {"job": "lateness", "node": "bars"}
        )
        == 1
    )

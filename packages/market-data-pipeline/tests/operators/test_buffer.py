"""``buffer``: size/time batching, order, and the three overflow policies."""

import asyncio
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.testing import make_quote, make_trade
from market_data_pipeline import records
from market_data_pipeline.backpressure import BackpressureController
from market_data_pipeline.components import Context, NodeStats
from market_data_pipeline.exceptions import BufferOverflowError, GraphError, PipelineError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.buffer import Buffer, BufferParams
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import (
    TestingProvider,
    collect,
    eventually,
    registry_with_fakes,
)


class Downstream:
    """An ``emit`` that holds each batch until its gate is open (a slow consumer)."""

    def __init__(self, *, open_: bool = True, yields: int = 0) -> None:
        self.batches: list[pa.Table] = []
        self.gate = asyncio.Event()
        self.yields = yields
        if open_:
            self.gate.set()

    async def __call__(self, batch: pa.Table, port: str = "out") -> None:
        await self.gate.wait()
        for _ in range(self.yields):
            await asyncio.sleep(0)
        self.batches.append(batch)

    @property
    def values(self) -> list[int]:
        return [v for b in self.batches for v in b.column("n").to_pylist()]


def _rows(start: int, count: int) -> pa.Table:
    return pa.table({"n": pa.array(range(start, start + count), type=pa.int64())})


def _batches(sizes: list[int]) -> list[pa.Table]:
    out, start = [], 0
    for size in sizes:
        out.append(_rows(start, size))
        start += size
    return out


async def _open(**params: Any) -> tuple[Buffer, NodeStats]:
    op = Buffer("buf", BufferParams(**params))
    stats = NodeStats()
    await op.open(
        Context(
            node_id="buf",
            job="test",
            stats=stats,
            rate=BackpressureController.unlimited(),
            stopping=asyncio.Event(),
        )
    )
    return op, stats


@pytest.mark.asyncio
async def test_emits_full_batches_then_the_rest_at_the_end() -> None:
    op, _ = await _open(max_rows=3, max_delay=None)
    down = Downstream()
    try:
        for batch in _batches([2, 2, 3]):
            await op.process(batch, down)
        await op.finish(down)
    finally:
        await op.close()
    assert [b.num_rows for b in down.batches] == [3, 3, 1]
    assert down.values == list(range(7))


@pytest.mark.asyncio
async def test_the_timer_flushes_what_is_pending() -> None:
    op, _ = await _open(max_rows=100, max_delay=0.5)
    assert op.timer_interval == 0.5
    down = Downstream()
    try:
        await op.process(_rows(0, 3), down)
        await asyncio.sleep(0)
        assert down.batches == []
        await op.on_timer(down)
        async with asyncio.timeout(10):
            await eventually(lambda: len(down.batches) == 1)
        assert op.pending == 0
        await op.finish(down)
    finally:
        await op.close()
    assert down.values == [0, 1, 2]


@pytest.mark.asyncio
async def test_rows_of_different_schemas_never_share_a_batch() -> None:
    op, _ = await _open(max_rows=10)
    down = Downstream()
    trades = records.from_models([make_trade(), make_trade()])
    quotes = records.from_models([make_quote()])
    try:
        for batch in (trades, quotes, trades):
            await op.process(batch, down)
        await op.finish(down)
    finally:
        await op.close()
    assert [records.kind_of(b) for b in down.batches] == ["trades", "quotes", "trades"]
    assert [b.num_rows for b in down.batches] == [2, 1, 2]


@pytest.mark.asyncio
async def test_block_waits_for_room_and_keeps_accepting_while_downstream_is_slow() -> None:
    op, _ = await _open(max_rows=2, capacity=4, max_delay=None)
    down = Downstream(open_=False)

    async def feed() -> None:
        for batch in _batches([1] * 10):
            await op.process(batch, down)

    try:
        feeder = asyncio.create_task(feed())
        async with asyncio.timeout(10):
            # one batch of 2 is held by the closed gate, 4 more rows wait in the buffer
            await eventually(lambda: op.pending == 4)
        await asyncio.sleep(0)
        assert not feeder.done()
        down.gate.set()
        async with asyncio.timeout(10):
            await feeder
        await op.finish(down)
    finally:
        await op.close()
    assert down.values == list(range(10))


@pytest.mark.asyncio
async def test_drop_oldest_evicts_and_counts() -> None:
    op, stats = await _open(max_rows=2, capacity=4, overflow="drop_oldest", max_delay=None)
    down = Downstream(open_=False)
    try:
        for batch in _batches([1] * 10):
            await op.process(batch, down)
        assert op.pending == 4
        down.gate.set()
        await op.finish(down)
    finally:
        await op.close()
    assert down.values == [6, 7, 8, 9]
    assert stats.counters == {"dropped": 6}


@pytest.mark.asyncio
async def test_drop_oldest_keeps_the_newest_rows_of_a_huge_batch() -> None:
    op, stats = await _open(max_rows=2, capacity=3, overflow="drop_oldest", max_delay=None)
    down = Downstream(open_=False)
    try:
        await op.process(_rows(0, 10), down)
        down.gate.set()
        await op.finish(down)
    finally:
        await op.close()
    assert down.values == [7, 8, 9]
    assert stats.counters == {"dropped": 7}


@pytest.mark.asyncio
async def test_error_overflow_names_the_node() -> None:
    op, _ = await _open(max_rows=2, capacity=4, overflow="error", max_delay=None)
    down = Downstream(open_=False)
    try:
        await op.process(_rows(0, 4), down)
        with pytest.raises(
            BufferOverflowError, match=r"node 'buf'.*4 pending \+ 1 incoming.*capacity of 4"
        ) as info:
            await op.process(_rows(4, 1), down)
    finally:
        await op.close()
    assert isinstance(info.value, PipelineError)
    assert (info.value.capacity, info.value.pending, info.value.incoming) == (4, 4, 1)


@pytest.mark.asyncio
async def test_a_failing_downstream_surfaces_in_process_or_finish() -> None:
    async def broken(batch: pa.Table, port: str = "out") -> None:
        raise ConnectionError("downstream is gone")

    op, _ = await _open(max_rows=1, capacity=1, max_delay=None)

    async def feed() -> None:
        for batch in _batches([1] * 5):
            await op.process(batch, broken)
        await op.finish(broken)

    try:
        with pytest.raises(ConnectionError, match="downstream is gone"):
            await feed()
    finally:
        await op.close()


@pytest.mark.asyncio
async def test_close_cancels_an_emitter_stuck_on_downstream() -> None:
    op, _ = await _open(max_rows=1, max_delay=None)
    down = Downstream(open_=False)
    await op.process(_rows(0, 3), down)
    await asyncio.sleep(0)
    await op.close()
    assert down.batches == []


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=15),
    max_rows=st.integers(1, 8),
    extra=st.integers(0, 10),
    yields=st.integers(0, 3),
)
@pytest.mark.asyncio
async def test_block_preserves_order_and_loses_nothing(
    sizes: list[int], max_rows: int, extra: int, yields: int
) -> None:
    op, stats = await _open(max_rows=max_rows, capacity=max_rows + extra, max_delay=None)
    down = Downstream(yields=yields)
    try:
        for batch in _batches(sizes):
            await op.process(batch, down)
        await op.finish(down)
    finally:
        await op.close()
    assert down.values == list(range(sum(sizes)))
    counts = [b.num_rows for b in down.batches]
    assert all(c == max_rows for c in counts[:-1])
    assert 0 < counts[-1] <= max_rows
    assert stats.counters == {}


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=15),
    max_rows=st.integers(1, 8),
    extra=st.integers(0, 10),
    release=st.integers(0, 15),
)
@pytest.mark.asyncio
async def test_drop_oldest_keeps_order_and_counts_every_drop(
    sizes: list[int], max_rows: int, extra: int, release: int
) -> None:
    op, stats = await _open(
        max_rows=max_rows, capacity=max_rows + extra, overflow="drop_oldest", max_delay=None
    )
    down = Downstream(open_=False)
    try:
        for i, batch in enumerate(_batches(sizes)):
            if i == release:
                down.gate.set()
            await op.process(batch, down)
            await asyncio.sleep(0)
        down.gate.set()
        await op.finish(down)
    finally:
        await op.close()
    values = down.values
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert values[-1] == sum(sizes) - 1  # the newest row always survives
    assert len(values) + stats.counters.get("dropped", 0) == sum(sizes)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_rows": 10, "capacity": 5}, r"capacity \(5\) must be at least max_rows \(10\)"),
        ({"max_rows": 0}, r"params.max_rows"),
        ({"overflow": "drop_newest"}, r"params.overflow"),
        ({"max_delay": 0}, r"params.max_delay"),
    ],
)
def test_params_errors_name_the_node(params: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError, match=rf"node 'op'.*{message}"):
        Graph.build(
            [
                node("src", "testing_provider", name="x"),
                node("op", "buffer", **params),
                node("out", "collect"),
            ],
            ["src -> op", "op -> out"],
        ).validated(registry_with_fakes())


@pytest.mark.asyncio
async def test_buffer_in_a_graph_rebatches() -> None:
    TestingProvider.feed("test_buffer_graph", _batches([2, 2, 3]))
    graph = Graph.build(
        [
            node("src", "testing_provider", name="test_buffer_graph"),
            node("buf", "buffer", max_rows=3, max_delay=None),
            node("out", "collect", name="test_buffer_graph"),
        ],
        ["src -> buf", "buf -> out"],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes(), channel_capacity=1).run()
    table = collect("test_buffer_graph")
    assert table is not None
    assert table.column("n").to_pylist() == list(range(7))
    assert result.nodes["buf"].batches_out == 3
    assert result.nodes["out"].batches_in == 3

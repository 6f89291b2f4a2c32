"""``throttle``: a token bucket checked on a fake clock (no wall time is measured)."""

import math
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.testing import make_trade
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.throttle import Throttle, ThrottleParams
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import TestingProvider, collect, registry_with_fakes, run_operator


class FakeTime:
    """A clock that moves only when the throttle sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Recorder:
    """An ``emit`` that notes when each batch went out."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.sent: list[tuple[float, pa.Table]] = []

    async def __call__(self, batch: pa.Table, port: str = "out") -> None:
        self.sent.append((self.time.now, batch))

    @property
    def values(self) -> list[int]:
        return [v for _, b in self.sent for v in b.column("n").to_pylist()]


def _throttle(**params: Any) -> tuple[Throttle, FakeTime]:
    op = Throttle("t", ThrottleParams(**params))
    time = FakeTime()
    op.clock = time.clock
    op.sleep = time.sleep
    return op, time


def _rows(start: int, count: int) -> pa.Table:
    return pa.table({"n": pa.array(range(start, start + count), type=pa.int64())})


@pytest.mark.asyncio
async def test_a_burst_goes_out_at_once() -> None:
    op, time = _throttle(rate=10)
    emit = Recorder(time)
    await op.process(_rows(0, 10), emit)
    assert time.sleeps == []
    assert [b.num_rows for _, b in emit.sent] == [10]


@pytest.mark.asyncio
async def test_a_big_batch_is_split_and_paced() -> None:
    op, time = _throttle(rate=10)
    emit = Recorder(time)
    await op.process(_rows(0, 25), emit)
    assert [(t, b.num_rows) for t, b in emit.sent] == [(0.0, 10), (1.0, 10), (1.5, 5)]
    assert time.sleeps == [1.0, 0.5]
    assert emit.values == list(range(25))


@pytest.mark.asyncio
async def test_idle_time_refills_the_bucket_up_to_the_burst_only() -> None:
    op, time = _throttle(rate=10, burst=5)
    emit = Recorder(time)
    await op.process(_rows(0, 5), emit)
    time.now += 100.0
    await op.process(_rows(5, 10), emit)
    assert [(t, b.num_rows) for t, b in emit.sent] == [(0.0, 5), (100.0, 5), (100.5, 5)]


@pytest.mark.asyncio
async def test_slow_rates_send_one_row_at_a_time() -> None:
    op, time = _throttle(rate=0.5)
    emit = Recorder(time)
    await op.process(_rows(0, 3), emit)
    assert [(t, b.num_rows) for t, b in emit.sent] == [(0.0, 1), (2.0, 1), (4.0, 1)]


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=10),
    rate=st.floats(0.25, 1000.0),
    burst=st.none() | st.floats(1.0, 50.0),
)
@pytest.mark.asyncio
async def test_rows_keep_their_order_and_sleeps_match_the_rate(
    sizes: list[int], rate: float, burst: float | None
) -> None:
    op, time = _throttle(rate=rate, burst=burst)
    capacity = burst if burst is not None else max(rate, 1.0)
    emit = Recorder(time)
    start = 0
    for size in sizes:
        await op.process(_rows(start, size), emit)
        start += size
    total = sum(sizes)
    assert emit.values == list(range(total))
    assert all(b.num_rows <= math.floor(capacity) for _, b in emit.sent)
    assert sum(time.sleeps) == pytest.approx(max(0.0, total - capacity) / rate, rel=1e-6, abs=1e-9)
    sent = 0
    for at, batch in emit.sent:
        sent += batch.num_rows
        assert sent <= capacity + rate * at + 1e-6 * capacity


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rate": 0}, r"params.rate"),
        ({"rate": -3}, r"params.rate"),
        ({}, r"params.rate"),
        ({"rate": 10, "burst": 0.5}, r"params.burst"),
        ({"rate": float("inf")}, r"params.rate"),
    ],
)
def test_params_errors_name_the_node(params: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError, match=rf"node 'op'.*{message}"):
        Graph.build(
            [
                node("src", "testing_provider", name="x"),
                node("op", "throttle", **params),
                node("out", "collect"),
            ],
            ["src -> op", "op -> out"],
        ).validated(registry_with_fakes())


@pytest.mark.asyncio
async def test_run_operator_with_the_default_clock_never_drops() -> None:
    batch = pa.table({"n": list(range(50))})
    out, _ = await run_operator(Throttle("t", ThrottleParams(rate=1e9)), [batch, batch])
    assert out["out"].column("n").to_pylist() == list(range(50)) * 2


@pytest.mark.asyncio
async def test_throttle_in_a_graph_on_a_fake_clock() -> None:
    TestingProvider.feed(
        "test_throttle_graph", [[make_trade(price=float(i)) for i in range(7)]] * 2
    )
    graph = Graph.build(
        [
            node("src", "testing_provider", name="test_throttle_graph"),
            node("slow", "throttle", rate=4, burst=2),
            node("out", "collect", name="test_throttle_graph"),
        ],
        ["src -> slow", "slow -> out"],
    ).validated(registry_with_fakes())
    time = FakeTime()
    throttle = graph.components["slow"]
    assert isinstance(throttle, Throttle)
    throttle.clock = time.clock
    throttle.sleep = time.sleep
    result = await GraphRuntime(graph).run()
    table = collect("test_throttle_graph")
    assert table is not None
    assert table.column("price").to_pylist() == [float(i) for i in range(7)] * 2
    assert sum(time.sleeps) == pytest.approx((14 - 2) / 4)
    assert result.nodes["slow"].batches_out == 8  # 2+2+2+1 per batch of 7

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.providers.synthetic import SyntheticParams, SyntheticProvider
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import collect, registry_with_fakes


def generate(**params: object) -> pa.Table:
    provider = SyntheticProvider("gen", SyntheticParams.model_validate(params))
    return pa.concat_tables(list(provider.tables()))


@pytest.mark.parametrize("kind", ["trades", "quotes"])
def test_a_second_run_with_the_same_seed_emits_identical_data(kind: str) -> None:
    first = generate(kind=kind, symbols=4, count=30_000, seed=7)
    second = generate(kind=kind, symbols=4, count=30_000, seed=7)
    assert first.num_rows == 30_000
    assert first.equals(second)


def test_different_seeds_give_different_data() -> None:
    a = generate(symbols=2, count=1000, seed=1)
    b = generate(symbols=2, count=1000, seed=2)
    assert not a.column("price").equals(b.column("price"))
    assert not a.column("ts").equals(b.column("ts"))


def test_the_data_do_not_depend_on_the_batch_size() -> None:
    small = SyntheticProvider("g", SyntheticParams(symbols=3, count=20_000, batch_size=333))
    large = SyntheticProvider("g", SyntheticParams(symbols=3, count=20_000, batch_size=50_000))
    small_batches = list(small.tables())
    assert {b.num_rows for b in small_batches[:-1]} == {333}
    assert pa.concat_tables(small_batches).equals(pa.concat_tables(list(large.tables())))


@pytest.mark.parametrize("kind", ["trades", "quotes"])
def test_records_are_valid_ordered_and_strictly_inside_the_span(kind: str) -> None:
    start = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    table = generate(kind=kind, symbols=5, count=50_000, start=start.isoformat(), duration="1h")
    checked = records.check(table, kind, source="synthetic")
    assert checked.equals(table)
    nanos = table.column("ts").cast(pa.int64()).to_numpy()
    start_ns = int(start.timestamp()) * 1_000_000_000
    assert nanos.min() >= start_ns
    assert nanos.max() < start_ns + 3600 * 1_000_000_000
    assert np.all(np.diff(nanos) >= 0)
    assert np.any(nanos % 1000 != 0)  # nanoseconds, not whole microseconds
    # a simulated feed: received when it happened, so each record is as of its event time
    assert table.column("as_of").equals(table.column("ts"))
    assert set(table.column("revision").to_pylist()) == {0}
    assert table.column("ordinal").null_count == 0
    prices = ["price"] if kind == "trades" else ["bid", "ask"]
    for name in prices:
        assert pc.min(table.column(name)).as_py() > 0
    if kind == "quotes":
        assert pc.all(pc.less(table.column("bid"), table.column("ask"))).as_py()


def test_symbols_by_count_or_by_name() -> None:
    counted = generate(symbols=12, count=5000)
    assert sorted(pc.unique(counted.column("symbol")).to_pylist()) == [
        f"SYM{i:03d}" for i in range(12)
    ]
    named = generate(symbols=["AAPL", "MSFT"], count=500)
    assert set(pc.unique(named.column("symbol")).to_pylist()) == {"AAPL", "MSFT"}


def test_events_per_second_is_per_symbol_in_event_time() -> None:
    params = SyntheticParams(symbols=3, duration="6h30m", events_per_second=2)
    assert params.duration == timedelta(hours=6, minutes=30)
    provider = SyntheticProvider("g", params)
    assert provider.total == 3 * 2 * 23_400
    assert sum(b.num_rows for b in provider.tables()) == provider.total


def test_defaults_are_a_trading_day_from_the_us_open() -> None:
    table = generate(symbols=1, events_per_second=0.1)
    assert table.num_rows == 2340
    first = table.column("ts")[0].as_py()
    last = table.column("ts")[-1].as_py()
    assert first >= datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    assert last < datetime(2024, 1, 2, 21, 0, tzinfo=UTC)


def test_a_trade_id_is_unique_per_run() -> None:
    table = generate(symbols=3, count=20_000)
    assert pc.count_distinct(table.column("trade_id")).as_py() == 20_000


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"duration": "6 hours"}, "not a duration"),
        ({"count": 10, "events_per_second": 1}, "either count or events_per_second"),
        ({"symbols": ["A B"]}, "not a valid symbol"),
        ({"symbols": 0}, "symbols must be >= 1"),
        ({"kind": "bars"}, "kind"),
    ],
)
def test_bad_params_fail_validation_naming_the_node(
    params: dict[str, object], message: str
) -> None:
    graph = Graph.build([node("gen", "synthetic", **params), node("out", "null")], ["gen -> out"])
    with pytest.raises(GraphError, match=message) as info:
        graph.validated()
    assert info.value.node_id == "gen"


@pytest.mark.asyncio
async def test_rate_paces_batches_in_wall_clock_time(make_context) -> None:
    provider = SyntheticProvider(
        "gen", SyntheticParams(symbols=2, count=5000, batch_size=1000, rate=500)
    )
    now = [100.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    provider.clock = lambda: now[0]
    provider.sleep = sleep
    await provider.open(make_context("gen"))
    rows = [b.num_rows async for b in provider.batches()]
    assert rows == [1000] * 5
    assert sleeps == pytest.approx([2.0] * 4)  # 1000 records at 500/s, after the first batch


@pytest.mark.asyncio
async def test_runs_in_a_graph() -> None:
    graph = Graph.build(
        [
            node("gen", "synthetic", kind="quotes", symbols=3, count=2500, batch_size=1000),
            node("out", "collect"),
        ],
        ["gen -> out"],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes()).run()
    table = collect("out")
    assert table is not None
    assert table.num_rows == 2500
    assert records.kind_of(table) is records.Kind.QUOTES
    assert result.nodes["gen"].batches_out == 3

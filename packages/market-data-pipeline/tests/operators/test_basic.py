"""``map``, ``flat_map``, ``filter`` and ``key_by``."""

import operator
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.testing import T0, make_quote, make_trade
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.basic import (
    Filter,
    FilterParams,
    FlatMap,
    KeyBy,
    KeyByParams,
    Map,
    MapParams,
)
from market_data_pipeline.registry import register_function
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import TestingProvider, collect, registry_with_fakes, run_operator


@register_function("test_basic_twice")
def _twice(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table])


@register_function("test_basic_first_row")
def _first_row(table: pa.Table) -> pa.Table:
    return table.slice(0, 1)


@register_function("test_basic_not_a_table")
def _not_a_table(table: pa.Table) -> Any:
    return [1, 2, 3]


@register_function("test_basic_big")
def _big(table: pa.Table) -> pa.ChunkedArray:
    return pc.greater_equal(table.column("size"), 100.0)


@register_function("test_basic_sizes")
def _sizes(table: pa.Table) -> pa.ChunkedArray:
    return table.column("size")


@register_function("test_basic_lower")
def _lower(table: pa.Table) -> pa.ChunkedArray:
    return pc.utf8_lower(table.column("symbol"))


def _trades(**columns: list[Any]) -> pa.Table:
    n = len(next(iter(columns.values())))
    rows = [make_trade(**{k: v[i] for k, v in columns.items()}) for i in range(n)]
    return records.from_models(rows)


def _build(type_: str, **params: Any) -> None:
    Graph.build(
        [
            node("src", "testing_provider", name="x"),
            node("op", type_, **params),
            node("out", "collect"),
        ],
        ["src -> op", "op -> out"],
    ).validated(registry_with_fakes())


# -- map / flat_map ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_map_applies_a_named_function() -> None:
    quotes = records.from_models([make_quote(bid=1.0, ask=2.0)])
    out, stats = await run_operator(Map("m", MapParams(fn="mid")), [quotes])
    assert out["out"].column("mid").to_pylist() == [1.5]
    assert stats.items_in == 1


@pytest.mark.asyncio
async def test_map_refuses_to_change_the_number_of_rows() -> None:
    op = Map("m", MapParams(fn="test_basic_twice"))
    with pytest.raises(ValueError, match=r"returned 2 rows for 1; use flat_map"):
        await run_operator(op, [_trades(size=[1.0])])


@pytest.mark.asyncio
async def test_map_refuses_what_is_not_a_table() -> None:
    op = FlatMap("m", MapParams(fn="test_basic_not_a_table"))
    with pytest.raises(TypeError, match=r"'test_basic_not_a_table' must return a pyarrow.Table"):
        await run_operator(op, [_trades(size=[1.0])])


@pytest.mark.asyncio
async def test_flat_map_may_return_more_or_fewer_rows() -> None:
    batch = _trades(size=[1.0, 2.0, 3.0])
    out, _ = await run_operator(FlatMap("f", MapParams(fn="test_basic_twice")), [batch, batch])
    assert out["out"].column("size").to_pylist() == [1.0, 2.0, 3.0] * 4
    out, _ = await run_operator(FlatMap("f", MapParams(fn="test_basic_first_row")), [batch])
    assert out["out"].column("size").to_pylist() == [1.0]


def test_unknown_function_is_a_graph_error_naming_the_node() -> None:
    with pytest.raises(GraphError, match=r"node 'op'.*map: unknown function 'nonesuch'"):
        _build("map", fn="nonesuch")
    with pytest.raises(GraphError, match=r"node 'op'.*params.fn"):
        _build("flat_map")


# -- filter --------------------------------------------------------------------------------

_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 5).map(float), min_size=1, max_size=30),
    op=st.sampled_from(sorted(_PY_OPS)),
    value=st.integers(0, 5),
)
@pytest.mark.asyncio
async def test_filter_matches_python_comparison(sizes: list[float], op: str, value: int) -> None:
    batch = _trades(size=sizes)
    out, stats = await run_operator(
        Filter("f", FilterParams(field="size", op=op, value=value)), [batch]
    )
    expected = [s for s in sizes if _PY_OPS[op](s, value)]
    kept = out["out"].column("size").to_pylist() if "out" in out else []
    assert kept == expected
    assert stats.counters.get("filtered", 0) == len(sizes) - len(expected)


@pytest.mark.asyncio
async def test_filter_in_and_not_in() -> None:
    batch = _trades(symbol=["A", "B", "C", "A"], size=[1.0, 2.0, 3.0, 4.0])
    inside, _ = await run_operator(
        Filter("f", FilterParams(field="symbol", op="in", value=["A", "C"])), [batch]
    )
    assert inside["out"].column("size").to_pylist() == [1.0, 3.0, 4.0]
    outside, _ = await run_operator(
        Filter("f", FilterParams(field="symbol", op="not_in", value=["A", "C"])), [batch]
    )
    assert outside["out"].column("size").to_pylist() == [2.0]


@pytest.mark.asyncio
async def test_filter_nulls_follow_python() -> None:
    batch = _trades(trade_id=["1", None, "2"], size=[1.0, 2.0, 3.0])

    async def kept(op: str, value: Any) -> list[float]:
        out, _ = await run_operator(
            Filter("f", FilterParams(field="trade_id", op=op, value=value)), [batch]
        )
        return out["out"].column("size").to_pylist() if "out" in out else []

    assert await kept("==", None) == [2.0]
    assert await kept("!=", None) == [1.0, 3.0]
    assert await kept("==", "1") == [1.0]
    assert await kept("!=", "1") == [2.0, 3.0]
    assert await kept("in", ["2", None]) == [2.0, 3.0]
    assert await kept("not_in", ["2"]) == [1.0, 2.0]
    assert await kept(">", "0") == [1.0, 3.0]


@pytest.mark.asyncio
async def test_filter_casts_the_value_to_the_field_type() -> None:
    batch = _trades(ts=[T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)])
    params = FilterParams(field="ts", op=">=", value="2024-01-02T14:30:01+00:00")
    out, _ = await run_operator(Filter("f", params), [batch])
    assert records.utc(out["out"]) == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]


@pytest.mark.asyncio
async def test_filter_on_a_dictionary_field() -> None:
    table = pa.table({"symbol": pa.array(["A", "B", "A"]).dictionary_encode(), "n": [0, 1, 2]})
    out, _ = await run_operator(
        Filter("f", FilterParams(field="symbol", op="==", value="A")), [table]
    )
    assert out["out"].column("n").to_pylist() == [0, 2]


@pytest.mark.asyncio
async def test_filter_with_a_mask_function() -> None:
    batch = _trades(size=[1.0, 100.0, 500.0])
    out, stats = await run_operator(Filter("f", FilterParams(fn="test_basic_big")), [batch])
    assert out["out"].column("size").to_pylist() == [100.0, 500.0]
    assert stats.counters == {"filtered": 1}


@pytest.mark.asyncio
async def test_filter_mask_must_be_boolean() -> None:
    with pytest.raises(TypeError, match=r"'test_basic_sizes' returned double"):
        await run_operator(Filter("f", FilterParams(fn="test_basic_sizes")), [_trades(size=[1.0])])


@pytest.mark.asyncio
async def test_filter_on_a_missing_field_names_it() -> None:
    op = Filter("f", FilterParams(field="nope", op="==", value=1))
    with pytest.raises(ValueError, match=r"no field 'nope'"):
        await run_operator(op, [_trades(size=[1.0])])


@pytest.mark.asyncio
async def test_filter_with_incomparable_value_says_so() -> None:
    op = Filter("f", FilterParams(field="price", op="<", value="cheap"))
    with pytest.raises(ValueError, match=r"cannot compare field 'price'"):
        await run_operator(op, [_trades(size=[1.0])])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fn": "test_basic_big", "field": "size"}, "either fn or field/op/value, not both"),
        ({"field": "size", "op": ">"}, "fn, or field, op and value"),
        ({}, "fn, or field, op and value"),
        ({"field": "size", "op": "in", "value": 3}, "op 'in' needs a list"),
        ({"field": "size", "op": ">", "value": [3]}, "op '>' needs a single value"),
        ({"field": "size", "op": "in", "value": [1, "a"]}, "cannot use"),
        ({"field": "size", "op": "~", "value": 3}, "params.op"),
        ({"field": "size", "op": "<", "value": None}, "op '<' cannot compare with null"),
        ({"fn": "nonesuch"}, "unknown function 'nonesuch'"),
    ],
)
def test_filter_params_errors_name_the_node(params: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError, match=rf"node 'op'.*{message}"):
        _build("filter", **params)


# -- key_by --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_key_by_field_adds_a_string_key() -> None:
    batch = _trades(symbol=["A", "B"], size=[1.0, 2.0])
    out, _ = await run_operator(KeyBy("k", KeyByParams(field="size")), [batch])
    table = out["out"]
    assert table.column_names == [*records.TRADES.names, "key"]
    assert table.schema.field("key").type == pa.string()
    assert table.column("key").to_pylist() == ["1", "2"]


@pytest.mark.asyncio
async def test_key_by_function_overwrites_the_key() -> None:
    batch = _trades(symbol=["AAPL", "BTC/USDT"])
    first, _ = await run_operator(KeyBy("k", KeyByParams(fn="symbol_root")), [batch])
    second, _ = await run_operator(KeyBy("k", KeyByParams(fn="test_basic_lower")), [first["out"]])
    assert first["out"].column("key").to_pylist() == ["AAPL", "BTC"]
    assert second["out"].column_names == first["out"].column_names
    assert second["out"].column("key").to_pylist() == ["aapl", "btc/usdt"]


@pytest.mark.asyncio
async def test_key_by_dictionary_field() -> None:
    table = pa.table({"symbol": pa.array(["A", "B", "A"]).dictionary_encode()})
    out, _ = await run_operator(KeyBy("k", KeyByParams(field="symbol")), [table])
    assert out["out"].schema.field("key").type == pa.string()
    assert out["out"].column("key").to_pylist() == ["A", "B", "A"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of field or fn"),
        ({"field": "symbol", "fn": "symbol_root"}, "exactly one of field or fn"),
        ({"fn": "nonesuch"}, "unknown function 'nonesuch'"),
    ],
)
def test_key_by_params_errors_name_the_node(params: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError, match=rf"node 'op'.*{message}"):
        _build("key_by", **params)


# -- in a graph ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stateless_operators_in_a_graph() -> None:
    TestingProvider.feed(
        "test_basic_graph",
        [
            [
                make_trade(symbol="BTC/USDT", price=2.0, size=50.0),
                make_trade(symbol="ES=F", size=200.0),
            ],
            [make_trade(symbol="AAPL", price=3.0, size=100.0)],
        ],
    )
    graph = Graph.build(
        [
            node("src", "testing_provider", name="test_basic_graph"),
            node("big", "filter", field="size", op=">=", value=100),
            node("keys", "key_by", fn="symbol_root"),
            node("value", "map", fn="notional"),
            node("out", "collect", name="test_basic_graph"),
        ],
        ["src -> big", "big -> keys", "keys -> value", "value -> out"],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes()).run()
    table = collect("test_basic_graph")
    assert table is not None
    assert table.column("key").to_pylist() == ["ES", "AAPL"]
    assert table.column("notional").to_pylist() == [185.25 * 200.0, 300.0]
    assert result.nodes["big"].counters == {"filtered": 1}

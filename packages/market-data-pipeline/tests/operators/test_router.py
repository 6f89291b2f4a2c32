"""``router``: every row to exactly one named output; nothing silently lost."""

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.testing import make_trade
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.router import UNROUTED, Router, RouterParams
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import TestingProvider, collect, registry_with_fakes, run_operator


def _table(exchanges: list[str | None]) -> pa.Table:
    return pa.table(
        {"exchange": pa.array(exchanges, pa.string()), "n": list(range(len(exchanges)))}
    )


def _numbers(out: dict[str, pa.Table]) -> dict[str, list[int]]:
    return {port: table.column("n").to_pylist() for port, table in out.items()}


VENUES = {"nasdaq": ["XNAS", "XBOS"], "nyse": ["XNYS", "ARCX"]}


@pytest.mark.asyncio
async def test_rows_go_to_their_route_or_the_default() -> None:
    op = Router("r", RouterParams(field="exchange", routes=VENUES, default="other"))
    assert op.outputs == ("nasdaq", "nyse", "other")
    out, stats = await run_operator(op, [_table(["XNAS", "XNYS", "BATS", "XBOS", None])])
    assert _numbers(out) == {"nasdaq": [0, 3], "nyse": [1], "other": [2, 4]}
    assert stats.counters == {}


@pytest.mark.asyncio
async def test_without_a_default_unmatched_rows_go_to_unrouted_and_are_counted() -> None:
    op = Router("r", RouterParams(field="exchange", routes=VENUES))
    assert op.outputs == ("nasdaq", "nyse", UNROUTED)
    out, stats = await run_operator(op, [_table(["BATS", "XNAS", None]), _table(["IEXG"])])
    assert _numbers(out) == {"nasdaq": [1], UNROUTED: [0, 2, 0]}
    assert stats.counters == {"unrouted": 3}


@pytest.mark.asyncio
async def test_the_default_may_be_one_of_the_routes_and_null_may_be_routed() -> None:
    routes = {"nasdaq": ["XNAS"], "missing": [None], "rest": []}
    op = Router("r", RouterParams(field="exchange", routes=routes, default="rest"))
    assert op.outputs == ("nasdaq", "missing", "rest")
    out, _ = await run_operator(op, [_table(["XNAS", None, "XNYS"])])
    assert _numbers(out) == {"nasdaq": [0], "missing": [1], "rest": [2]}


@pytest.mark.asyncio
async def test_route_by_a_key_function() -> None:
    table = records.from_models(
        [make_trade(symbol=s) for s in ("BTC/USDT", "ETH/USDT", "BTC/EUR", "AAPL")]
    )
    op = Router("r", RouterParams(fn="symbol_root", routes={"btc": ["BTC"], "eth": ["ETH"]}))
    out, stats = await run_operator(op, [table])
    assert {p: t.column("symbol").to_pylist() for p, t in out.items()} == {
        "btc": ["BTC/USDT", "BTC/EUR"],
        "eth": ["ETH/USDT"],
        UNROUTED: ["AAPL"],
    }
    assert stats.counters == {"unrouted": 1}


@pytest.mark.asyncio
async def test_values_are_cast_to_the_key_type() -> None:
    table = pa.table({"level": pa.array([1, 2, 3, 1], pa.int8()), "n": [0, 1, 2, 3]})
    op = Router("r", RouterParams(field="level", routes={"one": [1], "two_three": [2, 3]}))
    out, _ = await run_operator(op, [table])
    assert _numbers(out) == {"one": [0, 3], "two_three": [1, 2]}
    dictionary = pa.table({"exchange": pa.array(["XNYS", "XNAS"]).dictionary_encode(), "n": [0, 1]})
    out, _ = await run_operator(
        Router("r", RouterParams(field="exchange", routes=VENUES)), [dictionary]
    )
    assert _numbers(out) == {"nyse": [0], "nasdaq": [1]}


@pytest.mark.asyncio
async def test_values_that_cannot_be_keys_say_so() -> None:
    table = pa.table({"level": [1, 2], "n": [0, 1]})
    op = Router("r", RouterParams(field="level", routes={"a": ["high"]}))
    with pytest.raises(ValueError, match=r"routes' values do not fit keys of type int64"):
        await run_operator(op, [table])
    op = Router("r", RouterParams(field="venue", routes={"a": ["high"]}))
    with pytest.raises(ValueError, match=r"no field 'venue'"):
        await run_operator(op, [table])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"field": "x", "routes": {"a": ["X"], "b": ["Y", "X"]}},
            r"'X' is in two routes: 'a' and 'b'",
        ),
        ({"field": "x", "routes": {"a b": ["X"]}}, r"output name 'a b' must match"),
        ({"field": "x", "routes": {"a": ["X"]}, "default": "no.dots"}, r"output name 'no.dots'"),
        ({"field": "x", "routes": {"unrouted": ["X"]}}, r"a route is named 'unrouted'"),
        (
            {"field": "x", "fn": "symbol_root", "routes": {"a": ["X"]}},
            r"exactly one of field or fn",
        ),
        ({"routes": {"a": ["X"]}}, r"exactly one of field or fn"),
        ({"fn": "nonesuch", "routes": {"a": ["X"]}}, r"unknown function 'nonesuch'"),
        ({"field": "x", "routes": {}}, r"params.routes"),
        ({"field": "x", "routes": {"a": ["X"], "b": [1]}}, r"must be of one type"),
        ({"field": "x", "routes": {"a": [["X"]]}}, r"params.routes"),
    ],
)
def test_params_errors_name_the_node(params: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError, match=rf"node 'op'.*{message}"):
        Graph.build(
            [
                node("src", "testing_provider", name="x"),
                node("op", "router", **params),
                node("out", "collect"),
            ],
            ["src -> op", "op.a -> out"],
        ).validated(registry_with_fakes())


@settings(max_examples=80, deadline=None)
@given(
    keys=st.lists(st.sampled_from(["A", "B", "C", "D", "E", None]), min_size=1, max_size=40),
    owners=st.lists(st.sampled_from(["r0", "r1", "r2", None]), min_size=6, max_size=6),
    default=st.sampled_from([None, "r0", "fallback"]),
)
@pytest.mark.asyncio
async def test_router_is_total(
    keys: list[str | None], owners: list[str | None], default: str | None
) -> None:
    values = ["A", "B", "C", "D", "E", None]
    routes: dict[str, list[Any]] = {"r0": [], "r1": [], "r2": []}
    for value, owner in zip(values, owners, strict=True):
        if owner is not None:
            routes[owner].append(value)
    op = Router("r", RouterParams(field="exchange", routes=routes, default=default))
    out, stats = await run_operator(op, [_table(keys)])
    fallback = default or UNROUTED
    seen: list[int] = []
    for port, table in out.items():
        numbers = table.column("n").to_pylist()
        assert numbers == sorted(numbers)
        for number in numbers:
            owner = owners[values.index(keys[number])]
            assert port == (owner or fallback)
        seen += numbers
    assert sorted(seen) == list(range(len(keys)))
    unmatched = sum(1 for k in keys if owners[values.index(k)] is None)
    assert stats.counters.get("unrouted", 0) == (unmatched if default is None else 0)


@pytest.mark.asyncio
async def test_router_in_a_graph() -> None:
    exchanges = ["XNAS", "XNYS", "BATS", "XBOS"]
    TestingProvider.feed(
        "test_router_graph",
        [[make_trade(exchange=e, price=float(i)) for i, e in enumerate(exchanges)]],
    )
    graph = Graph.build(
        [
            node("src", "testing_provider", name="test_router_graph"),
            node("venue", "router", field="exchange", routes=VENUES),
            node("nasdaq", "collect", name="test_router_graph_nasdaq"),
            node("nyse", "collect", name="test_router_graph_nyse"),
            node("lost", "collect", name="test_router_graph_unrouted"),
        ],
        ["src -> venue", "venue.nasdaq -> nasdaq", "venue.nyse -> nyse", "venue.unrouted -> lost"],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes()).run()

    def prices(name: str) -> list[float]:
        table = collect(name)
        return table.column("price").to_pylist() if table is not None else []

    assert prices("test_router_graph_nasdaq") == [0.0, 3.0]
    assert prices("test_router_graph_nyse") == [1.0]
    assert prices("test_router_graph_unrouted") == [2.0]
    assert result.counter("unrouted") == 1

"""tumbling_window and sliding_window: per-key aggregates over event-time windows."""

import itertools
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.testing import T0, make_trade
from market_data_core.timestamps import to_ns
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError, RecordError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.window import SlidingWindow, TumblingWindow
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import (
    TestingProvider,
    collect,
    registry_with_fakes,
    run_operator,
)

LOOSE = {"max_delay": 10**6, "allowed_lateness": 10**6}
ALL_FNS = {
    "rows": {"fn": "count"},
    "qtys": {"fn": "count", "field": "qty"},
    "total": {"fn": "sum", "field": "qty"},
    "low": {"fn": "min", "field": "px"},
    "high": {"fn": "max", "field": "px"},
    "avg": {"fn": "mean", "field": "px"},
    "first_tag": {"fn": "first", "field": "tag"},
    "last_px": {"fn": "last", "field": "px"},
}

Row = tuple[str, float, int | None, float | None, str | None]
"""``(venue, seconds after T0, qty, px, tag)``."""


def events(rows: Sequence[Row]) -> pa.Table:
    base = to_ns(T0)
    return pa.table(
        {
            "venue": pa.array([r[0] for r in rows], pa.string()),
            "event_time": pa.array(
                [base + round(r[1] * 1_000_000_000) for r in rows], pa.int64()
            ).cast(records.TIMESTAMP),
            "qty": pa.array([r[2] for r in rows], pa.int64()),
            "px": pa.array([r[3] for r in rows], pa.float64()),
            "tag": pa.array([r[4] for r in rows], pa.string()),
        }
    )


def tumbling(**params: Any) -> TumblingWindow:
    defaults = {"size": "1m", "key": "venue", "time_field": "event_time"}
    return TumblingWindow("win", TumblingWindow.Params.model_validate(defaults | params))


def sliding(**params: Any) -> SlidingWindow:
    defaults = {"size": "1m", "slide": "30s", "key": "venue", "time_field": "event_time"}
    return SlidingWindow("win", SlidingWindow.Params.model_validate(defaults | params))


def seconds(table: pa.Table, column: str = "start") -> list[float]:
    return [(t - T0).total_seconds() for t in table.column(column).to_pylist()]


def split(table: pa.Table, cuts: Sequence[int]) -> list[pa.Table]:
    bounds = [0, *sorted({c % (table.num_rows + 1) for c in cuts}), table.num_rows]
    return [table.slice(a, b - a) for a, b in itertools.pairwise(bounds) if b > a]


def final(table: pa.Table, key: str = "venue") -> list[dict[str, Any]]:
    """The last emitted row of each (key, start), sorted by (key, start)."""
    latest: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in table.to_pylist():
        latest[(row[key], row["start"])] = row
    return [latest[k] for k in sorted(latest)]


# -- aggregates ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tumbling_window_computes_every_aggregate() -> None:
    table = events(
        [
            ("XNAS", 10, 5, 2.0, "a"),
            ("XNAS", 20, None, 4.0, "b"),
            ("XNAS", 5, 1, None, "c"),
            ("XNAS", 50, 2, 3.0, None),
            ("ARCX", 70, 7, 1.5, "z"),
            ("ARCX", 61, None, None, "y"),
        ]
    )
    out, stats = await run_operator(tumbling(aggregations=ALL_FNS), [table])
    result = out["out"]
    assert result.column_names == ["venue", "start", "end", "as_of", *ALL_FNS]
    assert result.schema.field("start").type == records.TIMESTAMP
    assert result.schema.field("end").type == records.TIMESTAMP
    assert result.schema.field("total").type == pa.int64()
    assert result.schema.field("first_tag").type == pa.string()
    assert seconds(result) == [0, 60]
    assert seconds(result, "end") == [60, 120]
    assert result.to_pylist()[0] | {"start": None, "end": None} == {
        "venue": "XNAS",
        "start": None,
        "end": None,
        "as_of": None,  # the rows have no version time
        "rows": 4,
        "qtys": 3,
        "total": 8,
        "low": 2.0,
        "high": 4.0,
        "avg": 3.0,
        "first_tag": "c",  # earliest event time (0:05), whatever the arrival order
        "last_px": 3.0,
    }
    second = result.to_pylist()[1]
    assert (second["rows"], second["qtys"], second["total"]) == (2, 1, 7)
    assert (second["low"], second["avg"], second["first_tag"], second["last_px"]) == (
        1.5,
        1.5,
        "y",
        1.5,
    )
    assert stats.counters.get("late", 0) == 0


@pytest.mark.asyncio
async def test_aggregates_without_values_are_null() -> None:
    table = events([("XNAS", 10, None, None, None)])
    out, _ = await run_operator(tumbling(aggregations=ALL_FNS), [table])
    row = out["out"].to_pylist()[0]
    assert (row["rows"], row["qtys"]) == (1, 0)
    assert [row[n] for n in ("total", "low", "high", "avg", "first_tag", "last_px")] == [None] * 6


@pytest.mark.asyncio
async def test_output_is_sorted_by_start_then_key_and_defaults_count_rows(
    make_trades: Any,
) -> None:
    trades = make_trades(
        [("MSFT", 5, 1, 1), ("AAPL", 1, 1, 1), ("MSFT", 70, 1, 1), ("AAPL", 80, 1, 1)]
    )
    op = TumblingWindow("win", TumblingWindow.Params.model_validate({"size": "1m"}))
    out, _ = await run_operator(op, [trades])
    result = out["out"]
    assert result.column_names == ["symbol", "start", "end", "as_of", "count"]
    assert [(r["symbol"], r["count"]) for r in result.to_pylist()] == [
        ("AAPL", 1),
        ("MSFT", 1),
        ("AAPL", 1),
        ("MSFT", 1),
    ]
    assert seconds(result) == [0, 0, 60, 60]


@pytest.mark.asyncio
async def test_first_and_last_keep_the_type_of_their_field() -> None:
    trades = records.from_models(
        [
            make_trade(ts=T0 + timedelta(seconds=2), conditions=("A", "B"), exchange="X"),
            make_trade(ts=T0 + timedelta(seconds=1), conditions=("C", "D"), exchange="Y"),
            make_trade(ts=T0 + timedelta(seconds=3), conditions=(), exchange="Z"),
        ]
    )
    aggregations = {
        "first_conditions": {"fn": "first", "field": "conditions"},
        "last_conditions": {"fn": "last", "field": "conditions"},
        "first_ts": {"fn": "first", "field": "ts"},
        "last_exchange": {"fn": "last", "field": "exchange"},
    }
    op = TumblingWindow(
        "win", TumblingWindow.Params.model_validate({"size": "1m", "aggregations": aggregations})
    )
    out, _ = await run_operator(op, [trades.slice(0, 2), trades.slice(2)])
    result = out["out"]
    assert result.schema.field("first_conditions").type == pa.list_(pa.string())
    assert result.schema.field("first_ts").type == records.TIMESTAMP
    row = result.to_pylist()[0]
    assert row["first_conditions"] == ["C", "D"]
    assert row["last_conditions"] is None  # no conditions (core's null for an empty list)
    assert row["first_ts"] == T0 + timedelta(seconds=1)
    assert row["last_exchange"] == "Z"


@pytest.mark.asyncio
async def test_a_window_is_as_of_the_latest_version_time_of_its_rows(make_trades: Any) -> None:
    trades = make_trades(
        [("AAPL", 1, 1, 1), ("AAPL", 2, 1, 1), ("AAPL", 3, 1, 1), ("AAPL", 70, 1, 1)],
        as_of=[50 * 10**9, None, 20 * 10**9, None],
    )
    op = TumblingWindow("win", TumblingWindow.Params.model_validate({"size": "1m"}))
    out, _ = await run_operator(op, [trades])
    assert out["out"].column("as_of").to_pylist() == [T0 + timedelta(seconds=50), None]


@pytest.mark.asyncio
async def test_sliding_windows_overlap() -> None:
    table = events(
        [("XNAS", 10, 1, 1.0, "a"), ("XNAS", 40, 2, 2.0, "b"), ("XNAS", 70, 4, 3.0, "c")]
    )
    op = sliding(aggregations={"total": {"fn": "sum", "field": "qty"}})
    out, _ = await run_operator(op, [table])
    result = out["out"]
    assert seconds(result) == [-30, 0, 30, 60]
    assert seconds(result, "end") == [30, 60, 90, 120]
    assert result.column("total").to_pylist() == [1, 3, 6, 4]


# -- event time -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_windows_fire_on_the_watermark_and_late_rows_go_aside() -> None:
    batches = [
        events([("XNAS", 10, 1, 1.0, "a"), ("XNAS", 65, 1, 2.0, "b")]),
        events([("XNAS", 20, 1, 3.0, "late"), ("XNAS", 66, 1, 4.0, "c")]),
    ]
    op = tumbling(aggregations={"n": {"fn": "count"}})
    out, stats = await run_operator(op, batches, finish=False)
    assert seconds(out["out"]) == [0]  # 1:00 is still open
    assert out["late"].to_pylist() == batches[1].slice(0, 1).to_pylist()
    assert stats.counters["late"] == 1


@pytest.mark.asyncio
async def test_allowed_lateness_re_emits_a_window() -> None:
    batches = [
        events([("XNAS", 10, 1, 1.0, "a"), ("XNAS", 65, 1, 2.0, "b")]),
        events([("XNAS", 20, 2, 3.0, "c")]),
    ]
    op = tumbling(allowed_lateness=30, aggregations={"q": {"fn": "sum", "field": "qty"}})
    out, stats = await run_operator(op, batches)
    assert [
        (s, q) for s, q in zip(seconds(out["out"]), out["out"]["q"].to_pylist(), strict=True)
    ] == [
        (0, 1),
        (0, 3),
        (60, 1),
    ]
    assert "late" not in out
    assert stats.counters.get("late", 0) == 0


@pytest.mark.asyncio
async def test_a_sliding_row_is_late_only_when_all_its_windows_are_gone() -> None:
    batches = [
        events([("XNAS", 95, 1, 1.0, "a")]),  # watermark 1:35: windows ending by then purged
        # 0:50 is in [0:00, 1:00) (purged) and [0:30, 1:30) (purged): late
        # 1:10 is in [0:30, 1:30) (purged) and [1:00, 2:00) (open): counted there only
        events([("XNAS", 50, 1, 2.0, "late"), ("XNAS", 70, 1, 3.0, "kept")]),
    ]
    op = sliding(aggregations={"n": {"fn": "count"}, "tags": {"fn": "last", "field": "tag"}})
    out, stats = await run_operator(op, batches)
    assert out["late"].column("tag").to_pylist() == ["late"]
    assert stats.counters["late"] == 1
    by_start = {
        s: (n, t)
        for s, n, t in zip(
            seconds(out["out"]),
            out["out"]["n"].to_pylist(),
            out["out"]["tags"].to_pylist(),
            strict=True,
        )
    }
    assert by_start == {60: (2, "a"), 90: (1, "a")}


@pytest.mark.asyncio
async def test_idle_timeout_closes_windows_of_an_idle_stream() -> None:
    TestingProvider.feed(
        "idle-events", [events([("XNAS", 10, 1, 1.0, "a")]), events([("ARCX", 15, 1, 1.0, "b")])]
    )
    graph = Graph.build(
        [
            node("src", "testing_provider", name="idle-events", delay=0.5),
            node(
                "win",
                "tumbling_window",
                size="1m",
                key="venue",
                time_field="event_time",
                idle_timeout=0.05,
            ),
            node("out", "collect"),
        ],
        ["src -> win", "win -> out"],
    )
    await GraphRuntime(graph, registry=registry_with_fakes()).run()
    result = collect("out")
    assert result is not None
    # XNAS went out alone while the stream idled; sorted by key it would come after ARCX
    assert result.column("venue").to_pylist() == ["XNAS", "ARCX"]


@pytest.mark.asyncio
async def test_sliding_window_runs_in_a_graph_by_its_registered_name(make_trades: Any) -> None:
    TestingProvider.feed("slide", [make_trades([("AAPL", 10, 1, 2), ("AAPL", 40, 1, 3)])])
    graph = Graph.build(
        [
            node("src", "testing_provider", name="slide"),
            node(
                "win",
                "sliding_window",
                size="1m",
                slide="30s",
                aggregations={"volume": {"fn": "sum", "field": "size"}},
            ),
            node("out", "collect"),
        ],
        ["src -> win", "win -> out", "win.late -> out"],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes()).run()
    table = collect("out")
    assert table is not None
    assert table.column("volume").to_pylist() == [2.0, 5.0, 3.0]
    assert result.nodes["win"].by_port == {"out": 3}


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bad_input_is_a_record_error_naming_node_and_field() -> None:
    table = events([("XNAS", 10, 1, 1.0, "a")])
    with pytest.raises(RecordError, match="node 'win'") as caught:
        await run_operator(tumbling(key="nope"), [table])
    assert caught.value.field == "nope"
    with pytest.raises(RecordError, match="numeric") as caught:
        await run_operator(tumbling(aggregations={"s": {"fn": "sum", "field": "tag"}}), [table])
    assert caught.value.field == "tag"
    fractional = table.set_column(2, "qty", pa.array([1.5], pa.float64()))
    op = tumbling(aggregations={"s": {"fn": "sum", "field": "qty"}})
    with pytest.raises(RecordError, match="cannot read as int64") as caught:
        await run_operator(op, [table, fractional])
    assert caught.value.field == "qty"
    naive = table.set_column(1, "event_time", table["event_time"].cast(pa.timestamp("us")))
    with pytest.raises(RecordError, match="timezone") as caught:
        await run_operator(tumbling(), [naive])
    assert caught.value.field == "event_time"


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("tumbling_window", {"size": "7m"}, "size"),
        ("tumbling_window", {"size": "1m", "aggregations": {}}, "aggregations"),
        ("tumbling_window", {"size": "1m", "aggregations": {"x": {"fn": "sum"}}}, "needs a field"),
        ("tumbling_window", {"size": "1m", "aggregations": {"x": {"fn": "median"}}}, "fn"),
        ("tumbling_window", {"size": "1m", "aggregations": {"end": {"fn": "count"}}}, "clash"),
        ("tumbling_window", {"size": "1m", "max_delay": -1}, "max_delay"),
        ("sliding_window", {"size": "1m"}, "slide"),
        ("sliding_window", {"size": "1m", "slide": "2m"}, "longer than size"),
    ],
)
def test_bad_params_are_a_graph_error_naming_the_node(
    kind: str, params: dict[str, Any], message: str
) -> None:
    graph = Graph.build(
        [
            node("src", "testing_provider", name="x"),
            node("win", kind, **params),
            node("out", "collect"),
        ],
        ["src -> win", "win -> out"],
    )
    with pytest.raises(GraphError, match=message) as caught:
        graph.validated(registry_with_fakes())
    assert caught.value.node_id == "win"


# -- properties -------------------------------------------------------------------------------


def brute_force(rows: Sequence[Row], size: int, slide: int) -> list[dict[str, Any]]:
    """Windows by definition: every window [k*slide, k*slide + size) that holds a row."""
    groups: dict[tuple[str, int], list[tuple[int, float, int, Row]]] = defaultdict(list)
    for arrival, row in enumerate(rows):
        micros = round(row[1] * 1_000_000)
        k = micros // (slide * 1_000_000)
        while k * slide * 1_000_000 + size * 1_000_000 > micros:
            groups[(row[0], k * slide)].append((micros, row[1], arrival, row))
            k -= 1
    out = []
    for (venue, start), members in sorted(groups.items()):
        by_time = sorted(members, key=lambda m: (m[0], m[2]))
        qtys = [m[3][2] for m in members if m[3][2] is not None]
        pxs = [m[3][3] for m in members if m[3][3] is not None]
        out.append(
            {
                "venue": venue,
                "start": T0 + timedelta(seconds=start),
                "end": T0 + timedelta(seconds=start + size),
                "as_of": None,
                "rows": len(members),
                "qtys": len(qtys),
                "total": sum(qtys) if qtys else None,
                "low": min(pxs) if pxs else None,
                "high": max(pxs) if pxs else None,
                "avg": sum(pxs) / len(pxs) if pxs else None,
                "first_tag": by_time[0][3][4],
                "last_px": by_time[-1][3][3],
            }
        )
    return out


event_rows = st.lists(
    st.tuples(
        st.sampled_from(["XNAS", "ARCX", "BATS"]),
        st.integers(-200, 400).map(lambda s: s * 0.25),
        st.none() | st.integers(-5, 100),
        st.none() | st.integers(0, 64).map(lambda p: p / 4),
        st.none() | st.sampled_from(["a", "b", "c"]),
    ),
    min_size=1,
    max_size=80,
)


def assert_windows_equal(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        avg, expected_avg = got.pop("avg"), want.pop("avg")
        assert avg == (None if expected_avg is None else pytest.approx(expected_avg))
        assert got == want


@settings(max_examples=60, deadline=None)
@given(
    data=event_rows,
    cuts=st.lists(st.integers(0, 100), max_size=5),
    shape=st.sampled_from([(60, 60), (15, 15), (60, 20), (60, 40), (30, 1)]),
)
@pytest.mark.asyncio
async def test_windows_equal_their_definition_for_any_split(
    data: list[Row], cuts: list[int], shape: tuple[int, int]
) -> None:
    size, slide = shape
    params = {"size": f"{size}s", "aggregations": ALL_FNS, **LOOSE}
    op = tumbling(**params) if size == slide else sliding(slide=f"{slide}s", **params)
    out, stats = await run_operator(op, split(events(data), cuts))
    assert stats.counters.get("late", 0) == 0
    assert_windows_equal(final(out["out"]), brute_force(data, size, slide))


@settings(max_examples=60, deadline=None)
@given(data=event_rows, cuts=st.lists(st.integers(0, 100), max_size=5))
@pytest.mark.asyncio
async def test_late_rows_and_windows_do_not_depend_on_batching(
    data: list[Row], cuts: list[int]
) -> None:
    table = events(data)
    aggregations = {"rows": {"fn": "count"}, "tag": {"fn": "last", "field": "tag"}}
    whole, _ = await run_operator(sliding(aggregations=aggregations), [table])
    parts, _ = await run_operator(sliding(aggregations=aggregations), split(table, cuts))
    assert final(parts["out"]) == final(whole["out"])
    assert (
        parts.get("late", table.slice(0, 0)).to_pylist()
        == whole.get("late", table.slice(0, 0)).to_pylist()
    )

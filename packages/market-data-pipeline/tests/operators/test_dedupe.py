"""``deduplicate``: first occurrence wins, keys expire in event time, memory stays bounded."""

import itertools
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.testing import T0, make_bar, make_quote, make_trade
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.dedupe import Deduplicate, DeduplicateParams
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import TestingProvider, collect, registry_with_fakes, run_operator

Row = tuple[str, int, str | None, float, int | None]
"""symbol, seconds after T0, trade_id, price, ordinal."""


def _table(rows: list[Row]) -> pa.Table:
    return pa.table(
        {
            "symbol": [r[0] for r in rows],
            "ts": [T0 + timedelta(seconds=r[1]) for r in rows],
            "price": [r[3] for r in rows],
            "size": [1.0] * len(rows),
            "exchange": [None] * len(rows),
            "trade_id": [r[2] for r in rows],
            "side": [None] * len(rows),
            "conditions": [None] * len(rows),
            "received_at": [None] * len(rows),
            "ordinal": [r[4] for r in rows],
            "as_of": [None] * len(rows),
            "revision": [0] * len(rows),
            "reason": [None] * len(rows),
        },
        schema=records.TRADES,
    )


def _rows(table: pa.Table | None) -> list[Row]:
    if table is None:
        return []
    return [
        (r["symbol"], int((r["ts"] - T0).total_seconds()), r["trade_id"], r["price"], r["ordinal"])
        for r in table.to_pylist()
    ]


async def _dedupe(batches: list[pa.Table], **params: Any) -> tuple[list[Row], int, Deduplicate]:
    op = Deduplicate("d", DeduplicateParams(**params))
    out, stats = await run_operator(op, batches)
    return _rows(out.get("out")), stats.counters.get("deduplicated", 0), op


def _oracle(rows: list[Row], keys: list[str] | None, ttl: int) -> list[Row]:
    """The documented rule, literally: a row passes unless an earlier passed row with its key
    has not expired, where the clock is the latest event time of passed rows and this row.
    No keys: core's key of a trade (symbol, ts, exchange, trade_id, ordinal) when the row
    has a trade id or an ordinal, else the whole row."""
    position = {"symbol": 0, "ts": 1, "trade_id": 2, "ordinal": 4}

    def key_of(row: Row) -> tuple[Any, ...]:
        if keys is None:
            identified = row[2] is not None or row[4] is not None
            return ("key", row[0], row[1], row[2], row[4]) if identified else ("row", *row)
        return tuple(row[position[k]] for k in keys)

    passed: list[Row] = []
    clock: int | None = None
    for row in rows:
        now = row[1] if clock is None else max(clock, row[1])
        key = key_of(row)
        if any(key_of(p) == key and now <= p[1] + ttl for p in passed):
            continue
        passed.append(row)
        clock = now
    return passed


def _split(rows: list[Row], cuts: list[int]) -> list[pa.Table]:
    bounds = sorted({0, len(rows), *(c % (len(rows) + 1) for c in cuts)})
    return [_table(rows[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]),
        st.integers(0, 40),
        st.sampled_from(["1", "2", None]),
        st.sampled_from([1.0, 2.0]),
        st.sampled_from([None, None, 0, 1]),
    ),
    max_size=40,
)
keys_strategy = st.sampled_from(
    [
        None,
        ["symbol", "ts"],
        ["symbol", "trade_id"],
        ["symbol", "ts", "trade_id"],
        ["symbol", "ts", "ordinal"],
    ]
)


@settings(max_examples=80, deadline=None)
@given(
    rows=rows_strategy,
    keys=keys_strategy,
    ttl=st.sampled_from([1, 5, 30]),
    cuts=st.lists(st.integers(0, 40), max_size=5),
)
@pytest.mark.asyncio
async def test_dedupe_matches_the_rule_whatever_the_batches(
    rows: list[Row], keys: list[str] | None, ttl: int, cuts: list[int]
) -> None:
    expected = _oracle(rows, keys, ttl)
    whole, dropped, _ = await _dedupe([_table(rows)], keys=keys, ttl=ttl)
    split, _, _ = await _dedupe(_split(rows, cuts), keys=keys, ttl=ttl)
    assert whole == expected
    assert split == expected
    assert dropped == len(rows) - len(expected)


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, keys=keys_strategy, ttl=st.sampled_from([1, 5, 30]))
@pytest.mark.asyncio
async def test_dedupe_is_idempotent(rows: list[Row], keys: list[str] | None, ttl: int) -> None:
    once, _, _ = await _dedupe([_table(rows)], keys=keys, ttl=ttl)
    twice, dropped, _ = await _dedupe([_table(once)], keys=keys, ttl=ttl)
    assert twice == once
    assert dropped == 0


@pytest.mark.asyncio
async def test_duplicates_within_and_across_batches_first_wins() -> None:
    first = _table(
        [("A", 0, None, 1.0, None), ("A", 0, None, 2.0, None), ("B", 0, None, 3.0, None)]
    )
    second = _table([("B", 0, None, 4.0, None), ("A", 1, None, 5.0, None)])
    rows, dropped, _ = await _dedupe([first, second], keys=["symbol", "ts"])
    assert rows == [("A", 0, None, 1.0, None), ("B", 0, None, 3.0, None), ("A", 1, None, 5.0, None)]
    assert dropped == 2


@pytest.mark.asyncio
async def test_a_key_expires_once_event_time_passes_its_ttl() -> None:
    keys = ["symbol", "trade_id"]
    rows, _, _ = await _dedupe(
        [
            _table([("A", 0, "7", 1.0, None), ("A", 10, "7", 2.0, None)]),  # within ttl: dropped
            _table([("A", 11, "7", 3.0, None)]),  # 11 > 0 + 10: expired, passes again
            _table([("A", 20, "7", 4.0, None), ("A", 22, "7", 5.0, None)]),  # 22 > 11 + 10: passes
        ],
        keys=keys,
        ttl=10,
    )
    assert [r[3] for r in rows] == [1.0, 3.0, 5.0]


@pytest.mark.asyncio
async def test_a_row_older_than_the_ttl_is_never_dropped_and_is_counted() -> None:
    op = Deduplicate("d", DeduplicateParams(ttl=10))
    out, stats = await run_operator(
        op,
        [
            _table(
                [("A", 0, None, 1.0, None), ("B", 100, None, 2.0, None), ("A", 0, None, 1.0, None)]
            )
        ],
    )
    assert [r[3] for r in _rows(out["out"])] == [1.0, 2.0, 1.0]  # the same record, too late
    assert stats.counters == {"past_ttl": 1}


@pytest.mark.asyncio
async def test_memory_is_bounded_by_the_ttl() -> None:
    op = Deduplicate("d", DeduplicateParams(ttl=10))
    batches = [
        _table([(f"S{i}", second, None, 1.0, None) for i in range(50)]) for second in range(100)
    ]
    out, _ = await run_operator(op, batches)
    assert out["out"].num_rows == 50 * 100
    assert op.remembered <= 50 * (2 * 10 + 2)


@pytest.mark.asyncio
async def test_nulls_in_keys_are_equal_and_null_times_pass() -> None:
    table = pa.table(
        {
            "symbol": ["A", "A", None, None, "A", "A"],
            "ts": [T0, T0, T0, T0, None, None],
            "n": [1, 2, 3, 4, 5, 6],
        },
        schema=pa.schema([("symbol", pa.string()), ("ts", records.TIMESTAMP), ("n", pa.int64())]),
    )
    out, stats = await run_operator(
        Deduplicate("d", DeduplicateParams(keys=["symbol", "ts"])), [table]
    )
    assert out["out"].column("n").to_pylist() == [1, 3, 5, 6]
    assert stats.counters == {"deduplicated": 2}


@pytest.mark.asyncio
async def test_numeric_event_time_in_seconds() -> None:
    table = pa.table({"id": ["x", "x", "x"], "t": [0.0, 0.5, 2.0]})
    out, _ = await run_operator(
        Deduplicate("d", DeduplicateParams(keys=["id"], time_field="t", ttl=1.0)), [table]
    )
    assert out["out"].column("t").to_pylist() == [0.0, 2.0]


@pytest.mark.asyncio
async def test_models_and_trade_ids() -> None:
    trades = [make_trade(trade_id="1"), make_trade(trade_id="2"), make_trade(trade_id="1")]
    out, stats = await run_operator(
        Deduplicate("d", DeduplicateParams(keys=["symbol", "ts", "trade_id"])),
        [records.from_models(trades)],
    )
    assert out["out"].column("trade_id").to_pylist() == ["1", "2"]
    assert stats.counters == {"deduplicated": 1}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"symbol": ["A"]}), r"no field 'ts' \(symbol\)"),
        (pa.table({"symbol": ["A"], "ts": ["x"]}), r"time_field 'ts' is string"),
        (pa.table({"symbol": [["A"]], "ts": [1.0]}), r"scalar values"),
    ],
)
@pytest.mark.asyncio
async def test_unusable_batches_say_why(table: pa.Table, message: str) -> None:
    params = DeduplicateParams(keys=["symbol", "ts"])
    with pytest.raises(ValueError, match=message):
        await run_operator(Deduplicate("d", params), [table])


@pytest.mark.asyncio
async def test_by_default_only_the_same_record_twice_is_a_duplicate() -> None:
    """Distinct trades that share a timestamp are kept (by core's key: trade id or ordinal,
    else by every field); the same trade sent twice is dropped."""
    table = _table(
        [
            ("A", 0, "1", 1.0, None),
            ("A", 0, "2", 1.0, None),  # another trade in the same second
            ("A", 0, "1", 1.0, None),  # trade 1 again: dropped
            ("A", 0, None, 1.0, None),
            ("A", 0, None, 2.0, None),  # no id, another price: kept
            ("A", 0, None, 1.0, None),  # the same record again: dropped
        ]
    )
    rows, dropped, _ = await _dedupe([table])
    assert rows == [
        ("A", 0, "1", 1.0, None),
        ("A", 0, "2", 1.0, None),
        ("A", 0, None, 1.0, None),
        ("A", 0, None, 2.0, None),
    ]
    assert dropped == 2


@pytest.mark.asyncio
async def test_ticks_that_differ_only_by_ordinal_are_kept() -> None:
    """Identical trades at one instant without a trade id are distinct ticks once a
    provider numbered them (core's Ordinals): none is dropped; the same tick twice is."""
    table = _table(
        [
            ("A", 0, None, 1.0, 0),
            ("A", 0, None, 1.0, 1),  # the same price, size and time: another trade
            ("A", 0, None, 1.0, 2),
            ("A", 0, None, 1.0, 1),  # tick 1 again (an overlapping replay): dropped
        ]
    )
    rows, dropped, _ = await _dedupe([table])
    assert [r[4] for r in rows] == [0, 1, 2]
    assert dropped == 1


@pytest.mark.asyncio
async def test_quotes_are_told_apart_by_their_sequence_and_bars_by_their_version() -> None:
    quotes = records.from_models(
        [
            make_quote(sequence=1),
            make_quote(sequence=2),  # the same book, a later update of the venue
            make_quote(sequence=1),
        ]
    )
    out, stats = await run_operator(Deduplicate("d", DeduplicateParams()), [quotes])
    assert out["out"].column("sequence").to_pylist() == [1, 2]
    assert stats.counters == {"deduplicated": 1}
    bars = records.from_models(
        [
            make_bar(close=185.0),
            make_bar(close=185.5, revision=1),
            make_bar(close=185.5, revision=1),
        ]
    )
    out, stats = await run_operator(Deduplicate("d", DeduplicateParams(time_field="start")), [bars])
    assert out["out"].column("revision").to_pylist() == [0, 1]  # a revision is no duplicate
    assert stats.counters == {"deduplicated": 1}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"keys": []}, r"params.keys"),
        ({"keys": ["symbol", "symbol"]}, r"keys must be distinct"),
        ({"ttl": 0}, r"params.ttl"),
        ({"window": 3}, r"params.window"),
    ],
)
def test_params_errors_name_the_node(params: dict[str, Any], message: str) -> None:
    with pytest.raises(GraphError, match=rf"node 'op'.*{message}"):
        Graph.build(
            [
                node("src", "testing_provider", name="x"),
                node("op", "deduplicate", **params),
                node("out", "collect"),
            ],
            ["src -> op", "op -> out"],
        ).validated(registry_with_fakes())


@pytest.mark.asyncio
async def test_dedupe_in_a_graph() -> None:
    at = [T0 + timedelta(seconds=s) for s in (0, 1)]
    TestingProvider.feed(
        "test_dedupe_graph",
        [
            [make_trade(ts=at[0], trade_id="1"), make_trade(ts=at[1], trade_id="2")],
            [make_trade(ts=at[0], trade_id="1"), make_trade(ts=at[1], trade_id="3")],
        ],
    )
    graph = Graph.build(
        [
            node("src", "testing_provider", name="test_dedupe_graph"),
            node("dedupe", "deduplicate", keys=["symbol", "ts", "trade_id"], ttl=5),
            node("out", "collect", name="test_dedupe_graph"),
        ],
        ["src -> dedupe", "dedupe -> out"],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes()).run()
    table = collect("test_dedupe_graph")
    assert table is not None
    assert table.column("trade_id").to_pylist() == ["1", "2", "3"]
    assert result.counter("deduplicated") == 1
    assert isinstance(records.utc(table)[0], datetime)

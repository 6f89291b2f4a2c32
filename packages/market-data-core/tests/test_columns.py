"""The columnar contract: conversions are exact, ordinals never merge distinct ticks and do
not depend on batch boundaries, and the newest version of each key wins in any order."""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core import Bar, Quote, Trade, from_ns, to_ns
from market_data_core.columns import (
    KEYS,
    TIMESTAMP,
    VALUES,
    ColumnError,
    Kind,
    Ordinals,
    conform,
    from_models,
    kind_of,
    latest_per_key,
    to_models,
)
from market_data_core.testing.strategies import bars, quotes, trades


@given(st.lists(trades(), max_size=5))
def test_trades_round_trip_through_a_table(items: list[Trade]) -> None:
    table = from_models(items, Kind.TRADES)
    assert to_models(conform(table), Kind.TRADES) == items


@given(st.lists(quotes(), max_size=5))
def test_quotes_round_trip_through_a_table(items: list[Quote]) -> None:
    assert to_models(conform(from_models(items, Kind.QUOTES)), Kind.QUOTES) == items


@given(st.lists(bars(), max_size=5))
def test_bars_round_trip_through_a_table(items: list[Bar]) -> None:
    assert to_models(conform(from_models(items, Kind.BARS)), Kind.BARS) == items


def test_nanoseconds_of_any_unit_are_kept_and_a_naive_column_is_refused() -> None:
    nanos = [1_704_205_800_123_456_789, 1_704_205_800_123_456_790]
    table = pa.table(
        {"symbol": ["A", "A"], "ts": pa.array(nanos, pa.timestamp("ns", "UTC")),
         "price": [1.0, 1.0], "size": [1.0, 1.0]}
    )  # fmt: skip
    out = conform(table)
    assert out.column("ts").cast(pa.int64()).to_pylist() == nanos
    assert [to_ns(t.ts) for t in to_models(out)] == nanos
    with pytest.raises(ColumnError, match=r"'ts'.*without a timezone"):
        conform(table.set_column(1, "ts", pa.array(nanos, pa.timestamp("ns"))))


def test_negative_zero_is_stored_as_zero() -> None:
    table = pa.table(
        {"symbol": ["A"], "ts": pa.array([0], TIMESTAMP), "price": [-0.0], "size": [-0.0]}
    )
    out = conform(table)
    assert str(out.column("price")[0].as_py()) == "0.0"
    assert str(out.column("size")[0].as_py()) == "0.0"


@pytest.mark.parametrize(
    ("column", "bad", "message"),
    [
        ("symbol", "a b", "is not a valid symbol"),
        ("reason", "late\n", "contains a control character"),
        ("exchange", "X\x00", "contains a NUL character"),
        ("exchange", "", "must be 1 to"),
    ],
)
def test_a_bad_value_among_repeated_ones_is_named_by_row_and_column(
    column: str, bad: str, message: str
) -> None:
    """Values repeat (a few symbols, one venue): the checks run once per distinct value,
    yet the error still names the first row that carries the bad one."""
    n = 400
    values = {"symbol": "AAPL", "reason": "late", "exchange": "XNAS"}
    table = pa.table(
        {"symbol": [values["symbol"]] * n, "ts": pa.array(range(n), TIMESTAMP),
         "price": [1.0] * n, "size": [1.0] * n, "exchange": [values["exchange"]] * n,
         "reason": [values["reason"]] * n}
    )  # fmt: skip
    conform(table)
    spoiled = table.column(column).to_pylist()
    spoiled[123] = spoiled[321] = bad
    index = table.schema.get_field_index(column)
    with pytest.raises(ColumnError, match=message) as excinfo:
        conform(table.set_column(index, column, pa.array(spoiled)))
    assert (excinfo.value.column, excinfo.value.row) == (column, 123)


def test_the_kind_is_told_by_the_columns() -> None:
    assert (
        kind_of(
            pa.schema(
                [
                    ("symbol", pa.string()),
                    ("ts", TIMESTAMP),
                    ("price", pa.float64()),
                    ("size", pa.float64()),
                    ("extra", pa.int8()),
                ]
            )
        )
        is Kind.TRADES
    )
    assert kind_of(pa.schema([("symbol", pa.string())])) is None


# --- ordinals ---------------------------------------------------------------------------

_SYMBOLS = ["A", "B"]
_EXCHANGES = [None, "X"]


@st.composite
def tick_tables(draw: st.DrawFn) -> pa.Table:
    """Trades of few symbols, instants and exchanges, some with ids: many collide."""
    n = draw(st.integers(0, 60))
    return pa.table(
        {
            "symbol": draw(st.lists(st.sampled_from(_SYMBOLS), min_size=n, max_size=n)),
            "ts": pa.array(
                draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), pa.int64()
            ).cast(TIMESTAMP),
            "price": draw(st.lists(st.sampled_from([1.0, 2.0]), min_size=n, max_size=n)),
            "size": [1.0] * n,
            "exchange": draw(st.lists(st.sampled_from(_EXCHANGES), min_size=n, max_size=n)),
            "trade_id": draw(
                st.lists(st.none() | st.sampled_from(["7", "8"]), min_size=n, max_size=n)
            ),
        }
    )


def _in_batches(table: pa.Table, cuts: list[int]) -> list[int]:
    ordinals = Ordinals()
    out: list[int] = []
    start = 0
    for stop in [*sorted(c % (table.num_rows + 1) for c in cuts), table.num_rows]:
        if stop > start:
            out += (
                ordinals.assign(table.slice(start, stop - start), Kind.TRADES)
                .column("ordinal")
                .to_pylist()
            )
            start = stop
    return out


@given(tick_tables(), st.lists(st.integers(0, 100), max_size=6))
def test_ordinals_do_not_depend_on_batch_boundaries(table: pa.Table, cuts: list[int]) -> None:
    whole = Ordinals().assign(table, Kind.TRADES).column("ordinal").to_pylist()
    assert _in_batches(table, cuts) == whole


@given(tick_tables())
def test_ordinals_count_identical_ticks_without_an_id_in_order(table: pa.Table) -> None:
    """The oracle: a plain loop counting earlier ticks of the same symbol, ts, exchange."""
    seen: dict[tuple[Any, ...], int] = {}
    expected = []
    for row in table.to_pylist():
        if row["trade_id"] is not None:
            expected.append(0)
            continue
        key = (row["symbol"], row["ts"], row["exchange"])
        expected.append(seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    out = Ordinals().assign(table, Kind.TRADES)
    assert out.column("ordinal").to_pylist() == expected
    keys = [
        tuple(r[k] for k in KEYS[Kind.TRADES]) for r in out.to_pylist() if r["trade_id"] is None
    ]
    assert len(keys) == len(set(keys))  # distinct ticks never share a key


def test_given_ordinals_are_kept() -> None:
    table = pa.table(
        {"symbol": ["A", "A"], "ts": pa.array([1, 1], TIMESTAMP), "price": [1.0, 1.0],
         "size": [1.0, 1.0], "ordinal": pa.array([5, None], pa.int64())}
    )  # fmt: skip
    assert Ordinals().assign(table, Kind.TRADES).column("ordinal").to_pylist() == [5, 0]


def test_ticks_further_behind_than_the_window_are_counted() -> None:
    ordinals = Ordinals(window_ns=10)
    first = pa.table(
        {"symbol": ["A"], "ts": pa.array([100], TIMESTAMP), "price": [1.0], "size": [1.0]}
    )
    late = pa.table(
        {"symbol": ["A"], "ts": pa.array([5], TIMESTAMP), "price": [1.0], "size": [1.0]}
    )
    ordinals.assign(first, Kind.TRADES)
    ordinals.assign(late, Kind.TRADES)
    assert ordinals.beyond_window == 1


# --- the newest version wins ------------------------------------------------------------


@st.composite
def versions(draw: st.DrawFn) -> list[Bar]:
    """Versions of a few bar keys with few as_of, revisions and values: ties happen."""
    start = from_ns(60_000_000_000)
    out = []
    for _ in range(draw(st.integers(0, 25))):
        close = draw(st.sampled_from([1.0, 2.0, 3.0]))
        out.append(
            Bar(
                source="s", symbol=draw(st.sampled_from(["A", "B"])), timeframe="1m",
                start=start, open=1.0, high=3.0, low=1.0, close=close,
                vwap=draw(st.none() | st.just(2.0)),
                as_of=from_ns(draw(st.integers(0, 2))), revision=draw(st.integers(0, 2)),
            )
        )  # fmt: skip
    return out


def _model(items: list[Bar]) -> tuple[dict[tuple[Any, ...], Bar], int]:
    """The rule, row by row: the greatest (as_of, revision, values) of each key, a null
    below any value; a conflict is a key whose kept version tied with another's version."""
    best: dict[tuple[Any, ...], Bar] = {}

    def rank(bar: Bar) -> tuple[Any, ...]:
        values = tuple((v is not None, v) for v in (getattr(bar, n) for n in VALUES[Kind.BARS]))
        return (to_ns(bar.as_of), bar.revision, values)  # type: ignore[arg-type]

    for bar in items:
        if bar.key not in best or rank(bar) >= rank(best[bar.key]):
            best[bar.key] = bar
    conflicts = sum(
        any(
            other.key == kept.key
            and rank(other)[:2] == rank(kept)[:2]
            and rank(other) != rank(kept)
            for other in items
        )
        for kept in best.values()
    )
    return best, conflicts


@settings(max_examples=200)
@given(versions(), st.randoms())
def test_the_newest_version_of_each_key_wins_in_any_order(
    items: list[Bar], rnd: random.Random
) -> None:
    expected, conflicts = _model(items)
    rnd.shuffle(items)
    latest = latest_per_key(from_models(items, Kind.BARS), Kind.BARS)
    kept = to_models(latest.table, Kind.BARS)
    assert {bar.key: bar for bar in kept} == expected
    assert len(kept) == len(expected)
    assert latest.conflicts == conflicts


def _copy(table: pa.Table) -> pa.Table:
    """The same values in a new table object (not one ``conform`` returned)."""
    return pa.Table.from_batches(table.to_batches(), schema=table.schema)


@given(tick_tables(), st.lists(st.integers(0, 100), max_size=4))
def test_a_checked_table_handed_on_is_not_checked_again_and_equals_a_fresh_check(
    table: pa.Table, cuts: list[int]
) -> None:
    """conform's output, and that output with its ordinals filled, are returned as they
    are by a second conform (the pipeline's check, then the store's); the table is what a
    fresh check of the same values gives, batch by batch."""
    ordinals = Ordinals()
    start = 0
    for stop in [*sorted(c % (table.num_rows + 1) for c in cuts), table.num_rows]:
        checked = conform(table.slice(start, stop - start), Kind.TRADES)
        assert conform(checked, Kind.TRADES) is checked
        filled = ordinals.assign(checked, Kind.TRADES)
        assert conform(filled, Kind.TRADES) is filled
        assert filled.equals(conform(_copy(filled), Kind.TRADES))
        start = stop


def test_a_table_derived_from_a_checked_one_is_checked_again() -> None:
    """Only conform's own output skips the check: a column replaced, a slice, a copy, or
    the table taken as another kind are checked (a bad value is refused, named)."""
    good = conform(
        pa.table({"symbol": ["A", "B"], "ts": pa.array([1, 2], TIMESTAMP),
                  "price": [1.0, 2.0], "size": [1.0, 1.0]}),
        Kind.TRADES,
    )  # fmt: skip
    index = good.column_names.index("price")
    bad = good.set_column(index, good.schema.field(index), pa.array([1.0, float("nan")]))
    with pytest.raises(ColumnError, match="not a finite number") as error:
        conform(bad, Kind.TRADES)
    assert (error.value.row, error.value.column) == (1, "price")
    size = good.column_names.index("size")
    negative = good.set_column(size, good.schema.field(size), pa.array([1.0, -1.0]))
    with pytest.raises(ColumnError, match="negative"):
        conform(negative.slice(1), Kind.TRADES)
    with pytest.raises(ColumnError, match="missing required"):
        conform(good, Kind.QUOTES)
    assert conform(good.slice(1), Kind.TRADES).equals(good.slice(1))

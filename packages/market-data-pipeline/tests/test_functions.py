"""Built-in named functions and the ``rowwise`` adapter."""

from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest

from market_data_core.testing import make_quote, make_trade
from market_data_pipeline import functions, records
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.registry import function


def test_builtins_are_registered_by_name() -> None:
    for name in ("mid", "spread", "notional", "symbol_root"):
        assert functions.resolve(name) is function(name)


def test_unknown_function_names_the_known_ones() -> None:
    with pytest.raises(GraphError, match=r"unknown function 'nope'.*mid"):
        functions.resolve("nope")


def test_mid_and_spread_add_columns_to_quotes() -> None:
    quotes = records.from_models([make_quote(bid=10.0, ask=11.0), make_quote(bid=1.0, ask=1.5)])
    out = functions.spread(functions.mid(quotes))
    assert out.column_names == [*records.QUOTES.names, "mid", "spread"]
    assert out.column("mid").to_pylist() == [10.5, 1.25]
    assert out.column("spread").to_pylist() == [1.0, 0.5]


def test_notional_overwrites_an_existing_column() -> None:
    trades = records.from_models([make_trade(price=2.0, size=3.0)])
    once = functions.notional(trades)
    twice = functions.notional(once)
    assert twice.column_names == once.column_names
    assert twice.column("notional").to_pylist() == [6.0]


def test_symbol_root_cuts_at_the_first_separator() -> None:
    symbols = ["BTC/USDT", "6EH4.XCME", "ES=F", "^GSPC", "BRK.B/X", "AAPL"]
    table = pa.table({"symbol": symbols})
    assert functions.symbol_root(table).to_pylist() == ["BTC", "6EH4", "ES", "^GSPC", "BRK", "AAPL"]


def test_rowwise_map_keeps_the_input_types() -> None:
    @functions.rowwise
    def double(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "size": row["size"] * 2}

    trades = records.from_models([make_trade(size=1.0), make_trade(size=5.0)])
    out = double(trades)
    assert out.schema.equals(records.TRADES)
    assert out.column("size").to_pylist() == [2.0, 10.0]
    assert double.__name__ == "double"


def test_rowwise_map_may_add_columns() -> None:
    @functions.rowwise
    def flag(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "big": row["size"] >= 100}

    out = flag(records.from_models([make_trade(size=100.0), make_trade(size=1.0)]))
    assert out.schema.field("ts").type == records.TIMESTAMP
    assert out.column("big").to_pylist() == [True, False]


def test_rowwise_mask_keys_and_flat_map() -> None:
    trades = records.from_models([make_trade(symbol="A", size=1.0), make_trade(symbol="B.X")])
    assert functions.rowwise(lambda row: row["size"] > 1)(trades).to_pylist() == [False, True]
    keys = functions.rowwise(lambda row: row["symbol"].lower())(trades)
    assert keys.to_pylist() == ["a", "b.x"]
    twice = functions.rowwise(lambda row: [row, row] if row["symbol"] == "A" else None)(trades)
    assert twice.num_rows == 2
    assert twice.schema.equals(records.TRADES)
    nothing = functions.rowwise(lambda row: [])(trades)
    assert nothing.num_rows == 0
    assert nothing.schema.equals(records.TRADES)


def test_rowwise_leaves_an_empty_table_alone() -> None:
    empty = records.empty("trades")
    assert functions.rowwise(lambda row: True)(empty) is empty


def test_as_array_checks_length_and_kind() -> None:
    assert functions.as_array([1, 2], 2, name="f", what="keys").to_pylist() == [1, 2]
    with pytest.raises(ValueError, match=r"'f' returned 1 values for 2 rows"):
        functions.as_array(pa.array([1]), 2, name="f", what="keys")
    with pytest.raises(TypeError, match=r"'f' returned a table"):
        functions.as_array(pa.table({"a": [1]}), 1, name="f", what="keys")
    with pytest.raises(TypeError, match=r"'f' must return keys"):
        functions.as_array(object(), 1, name="f", what="keys")


def test_rowwise_map_refuses_a_missing_row() -> None:
    trades = records.from_models([make_trade(size=1.0), make_trade(size=5.0)])
    maybe = functions.rowwise(lambda row: row if row["size"] > 1 else None)
    with pytest.raises(TypeError, match=r"returned None for a row"):
        maybe(trades)


def test_rowwise_rows_see_nanoseconds_and_give_them_back_exactly() -> None:
    nanos = pa.array([1704205800123456789, None], pa.int64())
    table = pa.table(
        {
            "ts": nanos.cast(pa.timestamp("ns", tz="UTC")),
            "local": nanos.cast(pa.timestamp("ns")),  # a wall time, no zone
        }
    )
    seen: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> dict[str, Any]:
        seen.append(row)
        return dict(row)

    out = functions.rowwise(keep)(table)
    first = seen[0]
    assert (first["ts"].nanosecond, first["ts"].utcoffset()) == (789, timedelta(0))
    assert (first["local"].nanosecond, first["local"].tzinfo) == (789, None)
    assert out.equals(table)

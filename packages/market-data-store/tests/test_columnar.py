"""The columnar edge: ``conform`` takes exactly the tables whose every row the core models
take, and of the others names a row the models refuse, and its column."""

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from market_data_core import Bar, Quote, Signal, Trade
from market_data_core.testing import T0
from market_data_store.columnar import (
    SCHEMAS,
    ArrowRecords,
    ColumnError,
    Kind,
    conform,
    from_models,
    kind_of,
    to_models,
)

_MODELS = {Kind.TRADES: Trade, Kind.QUOTES: Quote, Kind.BARS: Bar, Kind.SIGNALS: Signal}

# values near and past every rule: valid ones most of the time, a bad one now and then
prices = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0]),
)
sizes = st.one_of(st.floats(0, 1e6), st.sampled_from([-1.0, math.nan]))
symbols = st.one_of(
    st.sampled_from(["AAPL", "BTC/USDT", "6EH4.XCME", "^GSPC"]),
    st.sampled_from(["", " AAPL", "A" * 65, "a\x00b"]),
)
texts = st.one_of(
    st.none(),
    st.sampled_from(["XNAS", "a", "é", "x" * 32, "trade-1"]),
    st.sampled_from(["", "x" * 65, "nul\x00", "\ud800"[:0] + "\x01ok"]),
)
times = st.one_of(
    st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.sampled_from([datetime(1677, 12, 31, tzinfo=UTC), datetime(2262, 1, 1, tzinfo=UTC)]),
)


def _row(kind: Kind, draw: Any) -> dict[str, Any]:
    if kind is Kind.TRADES:
        return {
            "symbol": draw(symbols),
            "ts": draw(times),
            "price": draw(prices),
            "size": draw(sizes),
            "exchange": draw(texts),
            "trade_id": draw(texts),
            "side": draw(st.sampled_from([None, "buy", "sell", "BUY", "x"])),
            "conditions": draw(
                st.one_of(
                    st.none(), st.lists(st.sampled_from(["@", "T", "", "x" * 17]), max_size=3)
                )
            ),
        }
    if kind is Kind.QUOTES:
        return {
            "symbol": draw(symbols),
            "ts": draw(times),
            "bid": draw(prices),
            "ask": draw(prices),
            "bid_size": draw(sizes),
            "ask_size": draw(sizes),
            "exchange": draw(texts),
        }
    if kind is Kind.BARS:
        low = draw(st.floats(1, 100))
        high = low + draw(st.sampled_from([0.0, 1.0, -0.5]))
        timeframe = draw(st.sampled_from(["1m", "60s", "5m", "1h", "1d", "7x", "0m"]))
        start = T0 + timedelta(
            minutes=draw(st.integers(-10, 10)), seconds=draw(st.sampled_from([0, 0, 30]))
        )
        return {
            "source": draw(st.sampled_from(["test", "a.b:c-d", "bad source", ""])),
            "symbol": draw(symbols),
            "timeframe": timeframe,
            "start": start,
            "open": draw(st.sampled_from([low, high, low - 1])),
            "high": high,
            "low": low,
            "close": draw(st.sampled_from([low, high, high + 1, math.nan])),
            "volume": draw(sizes),
            "trade_count": draw(st.sampled_from([None, 0, 5, -1])),
            "vwap": draw(st.sampled_from([None, low, high + 2])),
        }
    return {
        "source": draw(st.sampled_from(["model", "bad source"])),
        "symbol": draw(symbols),
        "ts": draw(times),
        "name": draw(st.sampled_from(["momentum", "_x.y:z", "9bad", ""])),
        "value": draw(prices),
        "score": draw(st.sampled_from([None, 0.5, math.inf])),
        "metadata": draw(
            st.sampled_from([None, {}, {"window": 20, "note": "ok"}, {"": 1}, {"k": [1]}])
        ),
    }


@st.composite
def tables(draw: Any) -> tuple[Kind, list[dict[str, Any]]]:
    kind = draw(st.sampled_from(list(Kind)))
    rows = [_row(kind, draw) for _ in range(draw(st.integers(1, 6)))]
    return kind, rows


def _arrow(kind: Kind, rows: list[dict[str, Any]]) -> pa.Table:
    cells = [dict(row) for row in rows]
    if kind is Kind.SIGNALS:
        for cell in cells:
            cell["metadata"] = None if cell["metadata"] is None else json.dumps(cell["metadata"])
    return pa.Table.from_pylist(cells, schema=SCHEMAS[kind])


def _model_or_error(kind: Kind, row: dict[str, Any]) -> Any:
    values = {k: v for k, v in row.items() if v is not None}
    try:
        return _MODELS[kind].model_validate(values)
    except ValidationError:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_conform_takes_a_table_exactly_when_the_models_take_every_row(
    example: tuple[Kind, list[dict[str, Any]]],
) -> None:
    kind, rows = example
    models = [_model_or_error(kind, row) for row in rows]
    table = _arrow(kind, rows)
    if all(model is not None for model in models):
        conformed = conform(table, kind)
        assert to_models(conformed, kind) == models
    else:
        with pytest.raises(ColumnError) as caught:
            conform(table, kind)
        assert caught.value.row is not None  # a row the models refuse, and its column
        assert models[caught.value.row] is None, str(caught.value)


def test_an_error_names_the_row_and_the_column() -> None:
    table = from_models([Trade(symbol="AAPL", ts=T0, price=1.0, size=1.0)] * 3, Kind.TRADES)
    prices = pa.array([1.0, 2.0, math.nan])
    bad = table.set_column(table.schema.get_field_index("price"), "price", prices)
    with pytest.raises(ColumnError, match=r"row 2, column 'price': is not a finite number"):
        conform(bad, Kind.TRADES)


def test_columns_are_taken_by_name_and_missing_optional_ones_are_null() -> None:
    table = pa.table(
        {
            "size": [5.0],
            "price": [10.5],
            "ts": pa.array([T0], pa.timestamp("ns", tz="America/New_York")),
            "symbol": ["AAPL"],
            "extra": ["ignored"],
        }
    )
    assert kind_of(table) is Kind.TRADES
    conformed = conform(table)
    assert conformed.schema.equals(SCHEMAS[Kind.TRADES])
    assert to_models(conformed, Kind.TRADES) == [Trade(symbol="AAPL", ts=T0, price=10.5, size=5.0)]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"symbol": ["A"], "ts": [T0.replace(tzinfo=None)], "price": [1.0], "size": [1.0]}),
         "without a timezone"),
        (pa.table({"symbol": ["A"], "ts": [T0], "price": [1.0]}), "missing required column"),
        (pa.table({"symbol": ["A"], "ts": [T0], "price": ["1"], "size": [1.0]}), "is string, not double"),
        (pa.table({"x": [1]}), "cannot tell which kind"),
    ],
)  # fmt: skip
def test_tables_of_the_wrong_shape_say_what_is_wrong(table: pa.Table, message: str) -> None:
    kind = None if "x" in table.column_names else Kind.TRADES
    with pytest.raises(ColumnError, match=message):
        conform(table, kind)


def test_bar_timeframes_are_stored_in_their_canonical_spelling() -> None:
    table = pa.table(
        {
            "source": ["s"], "symbol": ["A"], "timeframe": ["60s"], "start": [T0],
            "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [0.0],
        }
    )  # fmt: skip
    assert conform(table, Kind.BARS).column("timeframe").to_pylist() == ["1m"]


def test_arrow_records_slice_without_copying_and_convert_to_models() -> None:
    trades = [
        Trade(symbol="AAPL", ts=T0 + timedelta(seconds=i), price=1.0, size=1.0) for i in range(10)
    ]
    records = ArrowRecords(Kind.TRADES, conform(from_models(trades, Kind.TRADES)))
    part = records[3:7]
    assert len(part) == 4
    assert part.to_models() == trades[3:7]
    sliced, whole = part.table.column("price").chunks[0], records.table.column("price").chunks[0]
    assert sliced.offset == 3  # a view of the same buffer
    assert sliced.buffers()[1].address == whole.buffers()[1].address

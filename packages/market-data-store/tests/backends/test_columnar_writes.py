"""The columnar write path on real databases (SQLite file, PostgreSQL server): Arrow
tables go in without a model per row and read back equal to the models they hold; keys
that come twice, replays, revisions and model chunks mixed in keep the newest version
(the model of ``market_data_core.testing.versions``); a row PostgreSQL refuses costs only
itself. Nothing is mocked."""

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_data_core import MAX_TIMESTAMP, MIN_TIMESTAMP, Quote, Trade
from market_data_core.columns import KEYS
from market_data_core.testing import AS_OF, T0, make_bar, make_quote, make_trade
from market_data_core.testing import strategies as mds
from market_data_core.testing.versions import newest
from market_data_store.backends.postgres import PostgresBackend
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.chunks import Batch
from market_data_store.columnar import (
    SCHEMAS,
    ArrowRecords,
    Kind,
    conform,
    from_models,
    to_models,
)
from market_data_store.coordinator import WriteCoordinator
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer

pytestmark = pytest.mark.asyncio
END = T0 + timedelta(days=3650)


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'store.db'}")
        await upgrade(url)
        opened: Any = SqliteBackend(url)
    else:
        url = await postgres_server.create_database()
        await upgrade(url)
        opened = PostgresBackend(url)
    await opened.open()
    yield opened
    await opened.close()


def _arrow(models: list[Any], kind: Kind) -> ArrowRecords:
    return ArrowRecords(kind, conform(from_models(models, kind), kind))


def _trade(i: int, **overrides: Any) -> Trade:
    fields = {"symbol": f"S{i % 3}", "ts": T0 + timedelta(seconds=i), "price": 100.0 + i}
    return make_trade(**(fields | overrides))


async def test_arrow_trades_read_back_as_the_models_they_hold(backend: Any) -> None:
    trades = [
        _trade(i, exchange="XNAS", trade_id=f"t{i}", side="buy", conditions=("@", "T"))
        if i % 2
        else _trade(i)
        for i in range(30)
    ]
    result = await backend.write(_arrow(trades, Kind.TRADES))
    assert result.trades == 30
    for symbol in ("S0", "S1", "S2"):
        stored = await backend.query_trades(symbol, T0, END)
        assert stored == [t for t in trades if t.symbol == symbol]


async def test_arrow_quotes_and_bars_read_back_too(backend: Any) -> None:
    quotes = [
        make_quote(ts=T0 + timedelta(seconds=i), exchange=None if i % 2 else "X") for i in range(5)
    ]
    bars = [make_bar(start=T0 + timedelta(minutes=i)) for i in range(5)]
    await backend.write(Batch([_arrow(quotes, Kind.QUOTES), _arrow(bars, Kind.BARS)]))
    assert await backend.query_quotes("AAPL", T0, END) == quotes
    assert await backend.query_bars("AAPL", "1m", T0, END) == bars


async def test_a_key_twice_in_a_table_is_written_once_and_the_newest_wins(
    backend: Any,
) -> None:
    newer = _trade(0, price=1.0, as_of=AS_OF + timedelta(seconds=1))  # a corrected print
    older = newer.model_copy(update={"price": 2.0, "as_of": AS_OF})
    result = await backend.write(_arrow([newer, _trade(3), older], Kind.TRADES))
    assert result.trades == 2
    assert await backend.query_trades("S0", T0, END) == [newer, _trade(3)]


async def test_replaying_a_table_changes_nothing_and_a_revision_replaces(backend: Any) -> None:
    trades = [_trade(i) for i in range(12)]
    await backend.write(_arrow(trades, Kind.TRADES))
    await backend.write(_arrow(trades, Kind.TRADES))
    assert await backend.count("trades") == 12
    revised = [t.model_copy(update={"price": 1.0, "revision": 1}) for t in trades[:3]]
    await backend.write(_arrow(revised, Kind.TRADES))
    assert await backend.count("trades") == 12
    stored = await backend.query_trades("S0", T0, END)
    assert stored[0] == revised[0]
    stale = [t.model_copy(update={"price": 9.0}) for t in trades[:3]]  # revision 0 again
    await backend.write(_arrow(stale, Kind.TRADES))
    assert (await backend.query_trades("S0", T0, END))[0] == revised[0]


async def test_model_and_table_writes_keep_the_newest_alike(backend: Any) -> None:
    old = _trade(0, price=2.0)
    new = old.model_copy(update={"price": 1.0, "as_of": AS_OF + timedelta(hours=1)})
    bars = [make_bar(start=T0 + timedelta(minutes=i)) for i in range(3)]
    result = await backend.write_models([old, _trade(3), *bars])
    assert (result.trades, result.bars) == (2, 3)
    table = conform(from_models([new], Kind.TRADES), Kind.TRADES)
    assert (await backend.write_table(Kind.TRADES, table)).trades == 1
    assert [t.price for t in await backend.query_trades("S0", T0, END)] == [1.0, 103.0]
    await backend.write_models([old])  # an older version changes nothing
    assert [t.price for t in await backend.query_trades("S0", T0, END)] == [1.0, 103.0]
    assert await backend.query_bars("AAPL", "1m", T0, END) == bars


async def test_model_and_arrow_chunks_of_one_table_keep_the_newest(backend: Any) -> None:
    old = _trade(0, price=2.0)
    new = old.model_copy(update={"price": 1.0, "as_of": AS_OF + timedelta(hours=1)})
    await backend.write(Batch([(old, _trade(3)), _arrow([new], Kind.TRADES)]))
    assert [t.price for t in await backend.query_trades("S0", T0, END)] == [1.0, 103.0]
    await backend.write(Batch([_arrow([new], Kind.TRADES), (old,)]))  # the order does not matter
    assert [t.price for t in await backend.query_trades("S0", T0, END)] == [1.0, 103.0]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),
            st.sampled_from(["S0", "S1"]),
            st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
            st.sampled_from([None, "XNAS", "é"]),
        ),
        min_size=1,
        max_size=30,
    )
)
async def test_round_trip_arrow_to_store_to_models_is_exact(
    backend: Any, rows: list[tuple[int, str, float, str | None]]
) -> None:
    trades = [
        make_trade(
            symbol=symbol, ts=T0 + timedelta(microseconds=us * 997), price=price, exchange=venue
        )
        for us, symbol, price, venue in rows
    ]
    await backend.delete_before("trades", END)  # each example starts empty
    await backend.write(_arrow(trades, Kind.TRADES))
    kept = newest(trades)  # the model: per key, the greatest version
    for symbol in ("S0", "S1"):
        stored = await backend.query_trades(symbol, T0, END, limit=100)
        expected = sorted(
            (t for t in kept.values() if t.symbol == symbol),
            key=lambda t: (t.ts, t.price, t.exchange or ""),
        )
        assert sorted(stored, key=lambda t: (t.ts, t.price, t.exchange or "")) == expected


_MODELS = {Kind.TRADES: mds.trades(), Kind.QUOTES: mds.quotes(), Kind.BARS: mds.bars()}


def _versioned(model: Any) -> Any:
    """``model`` with a version and, for a tick, an ordinal (what the store would give it)."""
    update: dict[str, Any] = {"as_of": model.as_of or AS_OF}
    if isinstance(model, Trade | Quote):
        update["ordinal"] = model.ordinal or 0
    return model.model_copy(update=update)


def _sorted(kind: Kind, table: pa.Table) -> pa.Table:
    names = [n for n in KEYS[kind] if pa.types.is_string(table.schema.field(n).type)]
    order = [*names, *(n for n in KEYS[kind] if n not in names)]
    return table.sort_by([(name, "ascending") for name in order])


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
async def test_round_trip_arrow_to_store_to_arrow_is_exact(
    backend: Any, data: st.DataObject
) -> None:
    """Any valid table of any kind, keys repeated and all: query_table gives back exactly the
    newest version of each key, column by column (every optional column, every float, every
    timestamp to the nanosecond)."""
    kind = data.draw(st.sampled_from([Kind.TRADES, Kind.QUOTES, Kind.BARS]))
    drawn = data.draw(st.lists(_MODELS[kind], min_size=1, max_size=25))
    symbols = data.draw(
        st.lists(st.sampled_from(["S0", "S1"]), min_size=len(drawn), max_size=len(drawn))
    )
    models = [
        _versioned(m.model_copy(update={"symbol": s})) for m, s in zip(drawn, symbols, strict=True)
    ]
    models += data.draw(st.lists(st.sampled_from(models), max_size=5))  # keys that come again
    await backend.delete_before(str(kind), MAX_TIMESTAMP)  # each example starts empty
    await backend.write(_arrow(models, kind))
    kept = newest(models)
    for symbol in ("S0", "S1"):
        mine = [m for m in kept.values() if m.symbol == symbol]
        groups = {str(m.timeframe) for m in mine} if kind is Kind.BARS else {None}
        for timeframe in sorted(groups, key=str):
            expected = [m for m in mine if kind is not Kind.BARS or str(m.timeframe) == timeframe]
            stored = await backend.query_table(
                kind, symbol, MIN_TIMESTAMP, MAX_TIMESTAMP, timeframe=timeframe, limit=100
            )
            assert stored.schema.equals(SCHEMAS[kind])
            want = _sorted(kind, conform(from_models(expected, kind), kind))
            assert _sorted(kind, stored).equals(want), (kind, symbol, timeframe)


async def test_a_row_postgresql_refuses_costs_only_itself(postgres_server: PostgresServer) -> None:
    url = await postgres_server.create_database()
    await upgrade(url)
    backend = PostgresBackend(url)
    await backend.open()
    table = conform(from_models([_trade(i) for i in range(40)], Kind.TRADES))
    venues = [None] * 40
    venues[17] = "XN\x00AS"  # past conform's check, as a buggy producer might send it
    poisoned = table.set_column(
        table.schema.get_field_index("exchange"), "exchange", pa.array(venues)
    )
    try:
        async with WriteCoordinator(
            backend, coordinator_id="columnar", batch_size=40, flush_interval=0.01
        ) as coordinator:
            receipt = await coordinator.submit_many(ArrowRecords(Kind.TRADES, poisoned))
            await receipt.wait()
        assert receipt.written == 39
        assert [refused.index for refused in receipt.refused] == [17]
        assert await backend.count("trades") == 39
    finally:
        await backend.close()


async def test_query_table_returns_the_stored_rows_as_arrow(backend: Any) -> None:
    trades = [
        _trade(i, trade_id=f"t{i}" if i % 2 else None, conditions=("@",) if i % 3 else ())
        for i in range(9)
    ]
    quotes = [make_quote(ts=T0 + timedelta(seconds=i)) for i in range(4)]
    bars = [make_bar(start=T0 + timedelta(minutes=i)) for i in range(3)]
    await backend.write(Batch([tuple(trades), tuple(quotes), tuple(bars)]))  # the model path
    table = await backend.query_table(Kind.TRADES, "S1", T0, END)
    assert table.schema.equals(from_models([], Kind.TRADES).schema)
    assert to_models(table, Kind.TRADES) == [t for t in trades if t.symbol == "S1"]
    assert to_models(await backend.query_table(Kind.QUOTES, "AAPL", T0, END), Kind.QUOTES) == quotes
    got = await backend.query_table(Kind.BARS, "AAPL", T0, END, timeframe="1m", limit=2)
    assert to_models(got, Kind.BARS) == bars[:2]

"""The read API (``market_data_store.connect``) on real databases, SQLite and PostgreSQL:
what was written comes back, every tick to the nanosecond, for any symbols and range, in
pandas, polars and Arrow, whole or streamed, blocking or async, as it is now or as the
store knew it at a time. The oracle is the written models themselves. Nothing is mocked.
"""

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import pytest_asyncio

from market_data_core import Quote, Trade, to_ns
from market_data_core.columns import from_models
from market_data_core.testing import T0, make_bar, make_quote, make_trade
from market_data_core.timestamps import from_ns
from market_data_store import connect, connect_async
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import BackendError, HistoryUnavailableError, ReadError
from market_data_store.read.sources import SqliteSource
from market_data_store.testing import PostgresServer

pytestmark = pytest.mark.asyncio
SYMBOLS = ["AAPL", "BTC/USDT", "^GSPC", "ES=F"]
TRADE_COLUMNS = ["symbol", "ts", "price", "size", "exchange", "trade_id", "side", "conditions",
                 "ordinal", "as_of", "revision"]  # fmt: skip


@dataclass
class Written:
    url: DatabaseUrl
    backend: Any
    trades: list[Trade]
    quotes: list[Quote]

    @property
    def text(self) -> str:
        return self.url.secret()


def _ticks(rng: random.Random) -> tuple[list[Trade], list[Quote]]:
    """Trades and quotes of several symbols; many share a microsecond (nanoseconds apart),
    some a nanosecond (told apart by exchange, trade id or ordinal)."""
    trades, quotes = [], []
    base = to_ns(T0)
    for n in range(400):
        symbol = rng.choice(SYMBOLS)
        ts = from_ns(
            base + rng.randrange(0, 50_000) * 1000 + rng.choice([0, 1, 999, rng.randrange(1000)])
        )
        trades.append(make_trade(
            symbol=symbol, ts=ts, price=round(rng.uniform(1, 500), 4), size=float(rng.randint(1, 900)),
            exchange=rng.choice([None, "XNAS", "ARCX"]), trade_id=rng.choice([None, f"t{n}"]),
            side=rng.choice([None, "buy", "sell"]),
            conditions=rng.choice([(), ("@",), ("F", "T")]), ordinal=n,
        ))  # fmt: skip
        quotes.append(make_quote(
            symbol=symbol, ts=ts, bid=100.0 + n, ask=100.5 + n,
            exchange=rng.choice([None, "XNAS"]), sequence=rng.choice([None, n]), ordinal=n,
        ))  # fmt: skip
    return trades, quotes


@pytest_asyncio.fixture
async def written(request: pytest.FixtureRequest, any_backend: Any) -> Written:
    trades, quotes = _ticks(random.Random(request.node.name))
    await any_backend.write([*trades, *quotes])
    return Written(any_backend.url, any_backend, trades, quotes)


def _oracle(models: list[Any], kind: str, columns: list[str]) -> pd.DataFrame:
    frame = from_models(models, kind).select(columns).to_pandas()
    return _canonical(frame)


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in one order whatever order they came in (lists as tuples, to sort)."""
    frame = frame.copy()
    if "conditions" in frame:
        frame["conditions"] = [None if c is None else tuple(c) for c in frame["conditions"]]
    keys = [
        c for c in ("symbol", "ts", "exchange", "trade_id", "sequence", "ordinal") if c in frame
    ]
    return frame.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


async def test_every_tick_of_every_symbol_comes_back_exactly(written: Written) -> None:
    store = connect(written.text)
    frame = store.trades().to_pandas()
    assert len(frame) == len(written.trades)
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    got = _canonical(frame[TRADE_COLUMNS])
    pd.testing.assert_frame_equal(got, _oracle(written.trades, "trades", TRADE_COLUMNS))
    ordered = list(zip(frame["symbol"], frame["ts"], strict=True))
    assert ordered == sorted(ordered), "each symbol's series is contiguous and in time order"


async def test_a_range_and_symbols_select_exactly_to_the_nanosecond(written: Written) -> None:
    rng = random.Random(3)
    store = connect(written.text)
    times = sorted({to_ns(t.ts) for t in written.trades})
    for _ in range(6):
        first, last = sorted(rng.sample(times, 2))
        symbols = rng.sample(SYMBOLS, rng.randint(1, 3))
        start, end = from_ns(first), pd.Timestamp(last, tz="UTC")  # both kinds of bound
        frame = store.trades(symbols, start, end).to_pandas()
        expected = [
            t for t in written.trades if t.symbol in symbols and first <= to_ns(t.ts) < last
        ]
        got = _canonical(frame[TRADE_COLUMNS])
        pd.testing.assert_frame_equal(got, _oracle(expected, "trades", TRADE_COLUMNS))


async def test_quotes_and_bars_come_back_too(written: Written) -> None:
    bars = [make_bar(symbol=s, start=T0 + timedelta(minutes=5 * i), timeframe="5m",
                     open=float(i), high=float(i), low=float(i), close=float(i), vwap=None)
            for s in SYMBOLS for i in range(30)]  # fmt: skip
    await written.backend.write(bars)
    store = connect(written.text)
    columns = ["symbol", "ts", "bid", "ask", "exchange", "sequence", "ordinal"]
    got = _canonical(store.quotes().to_pandas()[columns])
    pd.testing.assert_frame_equal(got, _oracle(written.quotes, "quotes", columns))
    day = store.bars(["AAPL", "ES=F"], "5m", T0 + timedelta(hours=1), "2100-01-01").to_pandas()
    assert len(day) == 2 * 18
    assert day.groupby("symbol")["close"].min().to_dict() == {"AAPL": 12.0, "ES=F": 12.0}
    assert store.bars("AAPL", "1m").to_arrow().num_rows == 0  # another timeframe


async def test_pandas_polars_and_arrow_hold_the_same_rows(written: Written) -> None:
    selection = connect(written.text).trades(["AAPL", "BTC/USDT"])
    table = selection.to_arrow()
    frame = selection.to_polars()
    assert isinstance(frame, pl.DataFrame)
    assert frame.height == table.num_rows > 0
    assert frame.schema["ts"] == pl.Datetime("ns", "UTC")
    assert frame["price"].to_list() == table.column("price").to_pylist()
    assert frame["ts"].cast(pl.Int64).to_list() == table.column("ts").cast(pa.int64()).to_pylist()
    assert selection.to_pandas()["price"].tolist() == table.column("price").to_pylist()


async def test_batches_stream_in_bounded_pieces_and_add_up_to_the_whole(written: Written) -> None:
    store = connect(written.text)
    if written.url.is_sqlite:  # a small batch size shows the streaming
        store.source = SqliteSource(written.url.sqlite_path(), batch_rows=32)
    selection = store.trades()
    batches = list(selection.batches())
    if written.url.is_sqlite:
        assert len(batches) > 5
        assert max(batch.num_rows for batch in batches) <= 32
    streamed = pa.Table.from_batches(batches, schema=selection.schema)
    assert streamed.equals(selection.to_arrow())
    assert selection.reader().read_all().equals(streamed)


async def test_the_async_reader_gives_the_same_as_the_blocking_one(written: Written) -> None:
    store = connect_async(written.text)
    table = await store.trades(["^GSPC"]).to_arrow()
    assert table.equals(connect(written.text).trades(["^GSPC"]).to_arrow())
    assert table.num_rows == sum(t.symbol == "^GSPC" for t in written.trades)
    rows = 0
    async for batch in store.quotes("^GSPC").batches():
        rows += batch.num_rows
    assert rows == sum(q.symbol == "^GSPC" for q in written.quotes)
    frame = await store.quotes("^GSPC").to_pandas()
    assert len(frame) == rows


async def test_as_known_at_reads_the_versions_of_that_time(written: Written) -> None:
    first = [t for t in written.trades if t.symbol == "AAPL"]
    await asyncio.sleep(0.01)
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    revised = [t.model_copy(update={"price": t.price + 1000, "revision": 1}) for t in first]
    await written.backend.write(revised)
    store = connect(written.text)
    now = store.trades("AAPL").to_pandas()
    then = store.trades("AAPL", as_known_at=between).to_pandas()
    assert sorted(now["price"]) == sorted(t.price for t in revised)
    assert sorted(then["price"]) == sorted(t.price for t in first)
    before = store.trades("AAPL", as_known_at=between - timedelta(days=1)).to_pandas()
    assert before.empty  # nothing was known a day before


async def test_what_a_read_cannot_answer_is_named(written: Written, tmp_path: Path) -> None:
    store = connect(written.text)
    with pytest.raises(ReadError, match="needs a timeframe"):
        store.read("bars", "AAPL")
    with pytest.raises(ReadError, match="'2m3' is not a timeframe"):
        store.bars("AAPL", "2m3")
    with pytest.raises(ReadError, match="cannot be read"):
        store.read("signals")
    with pytest.raises(ReadError, match="before start"):
        store.trades(None, "2024-02-01", "2024-01-01")
    with pytest.raises(ReadError, match="start 'yesterday' is not an ISO 8601 time"):
        store.trades(None, "yesterday")
    with pytest.raises(ReadError, match="symbols is empty"):
        store.trades([])
    with pytest.raises(HistoryUnavailableError, match="older than the history kept"):
        store.trades(as_known_at=datetime.now(UTC) - timedelta(days=400))
    hostile = "x' OR '1'='1"  # not a symbol anyone can store: found nowhere, runs nothing
    assert store.trades(hostile).to_arrow().num_rows == 0
    assert store.trades(["AAPL", "a'); DROP TABLE trades; --"]).to_arrow().num_rows > 0
    missing = tmp_path / "nowhere.db"
    with pytest.raises(ReadError, match=r"no store at .*nowhere\.db"):
        connect(missing)
    assert not missing.exists(), "a read never creates a store"


async def test_a_postgresql_read_never_shows_the_password(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.url_for("md_no_such_database")
    assert url.password
    with pytest.raises(BackendError) as caught:
        connect(url.secret()).trades().to_arrow()
    assert url.password not in str(caught.value)
    assert "md_no_such_database" in str(caught.value)

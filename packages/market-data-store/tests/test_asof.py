"""As-of joins equal ``pandas.merge_asof``: on Binance's BTC/USDT trades and quotes of
2021-01-08 (examples/data; quotes share milliseconds, so ties decide), through a store
written and read back, and on any tables hypothesis makes (ties, groups, tolerance)."""

import asyncio
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.columns import TIMESTAMP
from market_data_store import asof_join, connect
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.columnar import Kind, conform
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import ReadError
from market_data_store.migrate import upgrade

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"


def _binance() -> tuple[pa.Table, pa.Table]:
    """The files as core's trades and quotes (ordinals: the files' order)."""
    raw = pq.read_table(DATA / "btcusdt-trades.parquet")
    trades = pa.table({
        "symbol": pa.array(["BTC/USDT"] * raw.num_rows),
        "ts": raw.column("timestamp").cast(TIMESTAMP),
        "price": raw.column("price"),
        "size": raw.column("quantity"),
        "trade_id": raw.column("trade_id").cast(pa.string()),
        "ordinal": pa.array(np.arange(raw.num_rows)),
    })  # fmt: skip
    raw = pq.read_table(DATA / "btcusdt-quotes.parquet")
    quotes = pa.table({
        "symbol": raw.column("symbol"),
        "ts": raw.column("timestamp").cast(TIMESTAMP),
        "bid": raw.column("bid"), "ask": raw.column("ask"),
        "bid_size": raw.column("bid_size"), "ask_size": raw.column("ask_size"),
        "ordinal": pa.array(np.arange(raw.num_rows)),
    })  # fmt: skip
    return trades, quotes


def _merge_asof(left: pd.DataFrame, right: pd.DataFrame, **options: object) -> pd.DataFrame:
    return pd.merge_asof(
        left.sort_values("ts", kind="stable"), right.sort_values("ts", kind="stable"),
        on="ts", **options,  # type: ignore[arg-type]
    ).reset_index(drop=True)  # fmt: skip


def test_trades_get_the_prevailing_quote_as_merge_asof_gives_it() -> None:
    trades, quotes = _binance()
    joined = asof_join(trades, quotes, by="symbol", suffix="_quote").to_pandas()
    expected = _merge_asof(trades.to_pandas(), quotes.to_pandas(), by="symbol",
                           suffixes=("", "_quote"))  # fmt: skip
    pd.testing.assert_frame_equal(joined, expected)
    assert joined["bid"].notna().sum() > 1900  # most trades follow a quote
    nothing = asof_join(trades.slice(0, 0), quotes, suffix="_quote")
    assert nothing.num_rows == 0
    assert nothing.column_names == joined.columns.tolist()
    ties = quotes.to_pandas()["ts"].duplicated().sum()
    assert ties > 0, "the data has quotes of one millisecond: ties are tested"


def test_a_tolerance_leaves_stale_quotes_out_as_merge_asof_does() -> None:
    trades, quotes = _binance()
    limit = timedelta(milliseconds=40)
    joined = asof_join(trades, quotes, suffix="_quote", tolerance=limit).to_pandas()
    expected = _merge_asof(trades.to_pandas(), quotes.to_pandas(), by="symbol",
                           suffixes=("", "_quote"), tolerance=pd.Timedelta(limit))  # fmt: skip
    pd.testing.assert_frame_equal(joined, expected)
    assert 0 < joined["bid"].isna().sum() < len(joined)


def test_the_read_api_joins_what_it_reads(tmp_path: Path) -> None:
    trades, quotes = _binance()
    url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'store.db'}")

    async def write() -> None:
        await upgrade(url)
        backend = SqliteBackend(url)
        await backend.open()
        for table, kind in ((trades, Kind.TRADES), (quotes, Kind.QUOTES)):
            await backend.write_table(kind, conform(table, kind))
        await backend.close()

    asyncio.run(write())
    store = connect(tmp_path / "store.db")
    joined = store.trades("BTC/USDT").asof(store.quotes("BTC/USDT"), suffix="_quote").to_pandas()
    expected = _merge_asof(store.trades().to_pandas(), store.quotes().to_pandas(), by="symbol",
                           suffixes=("", "_quote"))  # fmt: skip
    pd.testing.assert_frame_equal(joined, expected)
    assert joined["ordinal_quote"].notna().all() == bool(joined["bid"].notna().all())


@st.composite
def _sides(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    def side(n: int, symbols: list[str]) -> pd.DataFrame:
        times = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
        picks = draw(st.lists(st.sampled_from(symbols), min_size=n, max_size=n))
        values = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
        frame = pd.DataFrame({
            "ts": pd.to_datetime(np.array(times, dtype=np.int64) * 1000, utc=True).astype(
                "datetime64[ns, UTC]"
            ),
            "symbol": picks, "value": values,
        })  # fmt: skip
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)

    symbols = draw(
        st.lists(st.sampled_from(["A", "B", "C/D"]), min_size=1, max_size=3, unique=True)
    )
    left = side(draw(st.integers(1, 30)), symbols)  # pandas cannot type an empty side
    right = side(draw(st.integers(1, 30)), symbols)
    return left, right


@settings(max_examples=200, deadline=None)
@given(_sides(), st.sampled_from([None, 0, 3_000, 20_000]), st.booleans())
def test_any_tables_join_as_merge_asof_joins_them(
    sides: tuple[pd.DataFrame, pd.DataFrame], tolerance_ns: int | None, by_symbol: bool
) -> None:
    left, right = sides
    tolerance = None if tolerance_ns is None else timedelta(microseconds=tolerance_ns / 1000)
    by = "symbol" if by_symbol else None
    joined = asof_join(
        pa.Table.from_pandas(left, preserve_index=False),
        pa.Table.from_pandas(right, preserve_index=False),
        by=by, tolerance=tolerance, suffix="_r",
    ).to_pandas()  # fmt: skip
    expected = _merge_asof(
        left, right, by=by, suffixes=("", "_r"),
        tolerance=None if tolerance is None else pd.Timedelta(tolerance),
    )  # fmt: skip
    pd.testing.assert_frame_equal(joined, expected, check_dtype=False)


def test_a_join_on_what_is_not_there_is_named() -> None:
    trades, quotes = _binance()
    with pytest.raises(ReadError, match="the right table has no column 'when'"):
        asof_join(trades, quotes, right_on="when")
    with pytest.raises(ReadError, match="no column 'venue' to join by"):
        asof_join(trades, quotes, by="venue")
    with pytest.raises(ReadError, match="'price' is double, not a time"):
        asof_join(trades, quotes, on="price", right_on="ts")

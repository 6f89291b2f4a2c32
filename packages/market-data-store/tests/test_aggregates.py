"""Roll-ups of base bars into higher timeframes, with pandas as the oracle."""

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core import Bar, Timeframe
from market_data_core.testing import T0
from market_data_store.aggregates import refresh_aggregates, roll_up
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import StoreConfigurationError
from market_data_store.migrate import upgrade


@st.composite
def minute_bars(draw: st.DrawFn) -> list[Bar]:
    minutes = draw(st.lists(st.integers(0, 600), min_size=1, max_size=80, unique=True))
    bars = []
    for minute in minutes:
        low = draw(st.floats(1, 1000, allow_nan=False))
        high = low + draw(st.floats(0, 10, allow_nan=False))
        inside = st.floats(low, high, allow_nan=False)
        bars.append(Bar(
            source="s", symbol="X", timeframe="1m", start=T0 + timedelta(minutes=minute),
            open=draw(inside), high=high, low=low, close=draw(inside),
            volume=draw(st.floats(0, 1e6, allow_nan=False)), trade_count=draw(st.integers(0, 1000)),
        ))  # fmt: skip
    return bars


@settings(max_examples=60, deadline=None)
@given(minute_bars(), st.sampled_from(["5m", "15m", "1h", "4h", "1d"]))
def test_roll_up_equals_pandas(bars: list[Bar], target: str) -> None:
    shuffled = list(reversed(bars))  # input order must not matter
    rolled = roll_up(shuffled, Timeframe.parse(target))
    frame = pd.DataFrame([b.model_dump() for b in bars]).set_index("start").sort_index()
    frame.index = pd.DatetimeIndex(frame.index)
    expected = frame.resample(Timeframe.parse(target).pandas_rule).agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            "volume": "sum",
            "trade_count": "sum",
            "symbol": "count",
        }
    )
    expected = expected[expected["symbol"] > 0]
    assert [b.start for b in rolled] == list(expected.index)
    assert [b.open for b in rolled] == expected["open"].tolist()
    assert [b.high for b in rolled] == expected["high"].tolist()
    assert [b.low for b in rolled] == expected["low"].tolist()
    assert [b.close for b in rolled] == expected["close"].tolist()
    assert [b.volume for b in rolled] == pytest.approx(expected["volume"].tolist())
    assert [b.trade_count for b in rolled] == expected["trade_count"].tolist()


@pytest.mark.asyncio
async def test_refresh_is_idempotent_and_keeps_sources_apart(tmp_path: Path) -> None:
    url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'agg.db'}")
    await upgrade(url)
    backend = SqliteBackend(url)
    await backend.open()
    try:
        base = [
            Bar(source=src, symbol=sym, timeframe="1m", start=T0 + timedelta(minutes=i),
                open=100 + i, high=101 + i, low=99 + i, close=100.5 + i, volume=10, trade_count=1)
            for src in ("a", "b") for sym in ("X", "Y") for i in range(120)
        ]  # fmt: skip
        await backend.write(base)
        for _ in range(2):
            (result,) = await refresh_aggregates(
                backend, base="1m", targets=["1h"], start=T0, end=T0 + timedelta(hours=2)
            )
            assert (result.symbols, result.bars) == (2, 2 * 2 * 3)  # 14:30, 15:00, 16:00 windows
        assert await backend.count("bars") == len(base) + 12
        hours = await backend.query_bars(
            "X", "1h", T0 - timedelta(minutes=30), T0 + timedelta(hours=3), source="b"
        )
        assert [h.trade_count for h in hours] == [30, 60, 30]
        assert (hours[0].open, hours[0].close) == (100, 129.5)
        with pytest.raises(StoreConfigurationError, match="must be a multiple of 1m"):
            await refresh_aggregates(backend, base="1m", targets=["30s"], start=T0, end=T0)
    finally:
        await backend.close()


def test_unknown_counts_and_prices_follow_the_pipelines_rules() -> None:
    from market_data_core import Timeframe
    from market_data_core.testing import T0, make_bar
    from market_data_store.aggregates import roll_up

    minute = Timeframe.parse("1m")
    bars = [
        make_bar(start=T0, timeframe=minute, volume=10.0, trade_count=4, vwap=make_bar().close),
        make_bar(
            start=T0 + minute.delta, timeframe=minute, volume=0.0, trade_count=None, vwap=None
        ),
    ]
    (five,) = roll_up(bars, Timeframe.parse("5m"))
    assert five.trade_count is None  # one count unknown: the sum is unknown
    assert five.vwap == bars[0].vwap  # a bar without volume does not make the price unknown
    traded = [*bars[:1], bars[1].model_copy(update={"volume": 5.0})]
    (again,) = roll_up(traded, Timeframe.parse("5m"))
    assert again.vwap is None  # 5 units traded at an unknown price

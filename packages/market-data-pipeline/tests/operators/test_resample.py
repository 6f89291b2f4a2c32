"""resample_ohlc: bars from trades, quotes and bars, in event time, against a pandas oracle."""

import functools
import itertools
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core import Timeframe
from market_data_core.testing import AS_OF, T0, make_bar, make_quote
from market_data_core.timestamps import to_ns
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError, RecordError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.dedupe import Deduplicate, DeduplicateParams
from market_data_pipeline.operators.resample import ResampleOHLC, ResampleParams
from market_data_pipeline.providers.replay import ReplayParams, ReplayProvider
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import (
    TestingProvider,
    collect,
    registry_with_fakes,
    run_operator,
)

EXAMPLES = Path(__file__).parents[4] / "examples/data"
DATA = EXAMPLES / "btcusdt-trades.parquet"
BARS_1M = EXAMPLES / "btc-perp-20211231-20220201_1m.csv.gz"
LOOSE = {"max_delay": 10**6, "allowed_lateness": 10**6}
"""Nothing is late and every window waits for the end of the stream."""


def resample(**params: Any) -> ResampleOHLC:
    return ResampleOHLC("bars", ResampleParams.model_validate({"timeframe": "1m", **params}))


async def run(
    batches: Sequence[pa.Table], *, finish: bool = True, **params: Any
) -> tuple[dict[str, pa.Table], Any]:
    return await run_operator(resample(**params), batches, finish=finish)


def rows(table: pa.Table, *names: str) -> list[tuple[Any, ...]]:
    columns = [table.column(n).to_pylist() for n in names]
    return list(zip(*columns, strict=True))


def minutes(table: pa.Table) -> list[int]:
    """Each bar's start as whole minutes after T0."""
    return [(s - T0) // timedelta(minutes=1) for s in table.column("start").to_pylist()]


def utc_times(table: pa.Table) -> list[datetime]:
    return [t.astimezone(UTC) for t in table.column("ts").to_pylist()]


def split(table: pa.Table, cuts: Sequence[int]) -> list[pa.Table]:
    bounds = [0, *sorted({c % (table.num_rows + 1) for c in cuts}), table.num_rows]
    return [table.slice(a, b - a) for a, b in itertools.pairwise(bounds) if b > a]


def final_revisions(table: pa.Table) -> pd.DataFrame:
    """The last emitted row of each bar key, sorted by (symbol, start)."""
    frame = table.to_pandas()
    frame = frame.drop_duplicates(["source", "symbol", "timeframe", "start"], keep="last")
    return frame.sort_values(["symbol", "start"], kind="stable").reset_index(drop=True)


def oracle(trades: pa.Table, timeframe: str) -> pd.DataFrame:
    """Bars by pandas: stable sort by time, then per symbol resample (left label/closed)."""
    rule = Timeframe.parse(timeframe).pandas_rule
    frame = trades.select(["symbol", "ts", "price", "size"]).to_pandas()
    frame = frame.sort_values("ts", kind="stable")
    frame["pv"] = frame["price"] * frame["size"]
    out = []
    for symbol, group in frame.groupby("symbol", sort=True):
        bins = group.set_index("ts").resample(rule, label="left", closed="left")
        bars = pd.DataFrame(
            {
                "open": bins["price"].first(),
                "high": bins["price"].max(),
                "low": bins["price"].min(),
                "close": bins["price"].last(),
                "volume": bins["size"].sum(),
                "trade_count": bins["price"].count(),
                "pv": bins["pv"].sum(),
            }
        )
        bars = bars[bars["trade_count"] > 0].copy()
        bars["vwap"] = (bars["pv"] / bars["volume"]).where(bars["volume"] > 0)
        bars["symbol"] = symbol
        out.append(bars.rename_axis("start").reset_index())
    result = pd.concat(out, ignore_index=True)
    return result.sort_values(["symbol", "start"], kind="stable").reset_index(drop=True)


def assert_bars_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert actual["symbol"].tolist() == expected["symbol"].tolist()
    assert actual["start"].tolist() == expected["start"].tolist()
    assert actual["trade_count"].tolist() == expected["trade_count"].tolist()
    for name in ("open", "high", "low", "close"):
        assert actual[name].tolist() == expected[name].tolist(), name
    for name in ("volume", "vwap"):
        np.testing.assert_allclose(
            actual[name].to_numpy(dtype=float),
            expected[name].to_numpy(dtype=float),
            rtol=1e-9,
            atol=1e-9,
            equal_nan=True,
            err_msg=name,
        )


# -- bars from trades --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_trades_make_ohlcv_bars_sorted_by_start_then_symbol(make_trades: Any) -> None:
    trades = make_trades(
        [
            ("MSFT", 1, 50.0, 1),
            ("AAPL", 5, 10.0, 2),
            ("AAPL", 20, 12.0, 1),
            ("AAPL", 30, 9.0, 3),
            ("AAPL", 59.999999, 11.0, 2),
            ("MSFT", 61, 51.0, 0),
            ("AAPL", 65, 13.0, 1),
        ]
    )
    out, stats = await run([trades], source="ingest")
    bars = out["out"]
    assert records.kind_of(bars) is records.Kind.BARS
    assert rows(bars, "symbol", "open", "high", "low", "close", "volume", "trade_count") == [
        ("AAPL", 10.0, 12.0, 9.0, 11.0, 8.0, 4),
        ("MSFT", 50.0, 50.0, 50.0, 50.0, 1.0, 1),
        ("AAPL", 13.0, 13.0, 13.0, 13.0, 1.0, 1),
        ("MSFT", 51.0, 51.0, 51.0, 51.0, 0.0, 1),
    ]
    assert minutes(bars) == [0, 0, 1, 1]
    assert bars.column("vwap").to_pylist() == [
        pytest.approx((20 + 12 + 27 + 22) / 8),
        50.0,
        13.0,
        None,  # no volume: no vwap
    ]
    assert set(bars.column("source").to_pylist()) == {"ingest"}
    assert set(bars.column("timeframe").to_pylist()) == {"1m"}
    assert len(records.to_models(bars)) == 4
    assert "late" not in out
    assert stats.counters.get("late", 0) == 0


@pytest.mark.asyncio
async def test_source_defaults_to_the_job_name(make_trades: Any) -> None:
    out, _ = await run([make_trades([("AAPL", 1, 10.0, 1)])])
    assert out["out"].column("source").to_pylist() == ["test"]


@pytest.mark.asyncio
async def test_open_and_close_follow_event_time_and_arrival_order_across_batches(
    make_trades: Any,
) -> None:
    first = make_trades([("AAPL", 30, 5.0, 1), ("AAPL", 10, 1.0, 1), ("AAPL", 50, 7.0, 1)])
    second = make_trades([("AAPL", 10, 2.0, 1), ("AAPL", 50, 8.0, 1), ("AAPL", 40, 6.0, 1)])
    third = make_trades([("AAPL", 10, 0.5, 1), ("AAPL", 50, 9.0, 1)])
    out, _ = await run([first, second, third])
    assert rows(out["out"], "open", "close", "trade_count") == [(1.0, 9.0, 8)]
    # ties inside one batch: the first arrival opens, the last arrival closes
    tied = make_trades([("AAPL", 10, 3.0, 1), ("AAPL", 10, 4.0, 1), ("AAPL", 10, 5.0, 1)])
    out, _ = await run([tied])
    assert rows(out["out"], "open", "close") == [(3.0, 5.0)]


# -- event time: watermark, lateness, late output, finish, idle ---------------------------


@pytest.mark.asyncio
async def test_a_window_fires_once_the_watermark_passes_its_end(make_trades: Any) -> None:
    op = resample()
    first = make_trades([("AAPL", 10, 1.0, 1), ("AAPL", 59, 2.0, 1)])
    out, _ = await run_operator(op, [first], finish=False)
    assert out == {}  # the watermark (0:59) has not reached the end (1:00)
    second = make_trades([("AAPL", 60, 3.0, 1), ("AAPL", 130, 4.0, 1)])
    out, _ = await run_operator(resample(), [first, second], finish=False)
    assert minutes(out["out"]) == [0, 1]
    assert rows(out["out"], "open", "close") == [(1.0, 2.0), (3.0, 3.0)]


@pytest.mark.asyncio
async def test_max_delay_holds_windows_back(make_trades: Any) -> None:
    batches = [make_trades([("AAPL", 10, 1.0, 1)]), make_trades([("AAPL", 65, 2.0, 1)])]
    out, _ = await run(batches, finish=False, max_delay=10)
    assert out == {}  # watermark 0:55
    batches.append(make_trades([("AAPL", 50, 3.0, 1), ("AAPL", 70, 4.0, 1)]))
    out, stats = await run(batches, finish=False, max_delay=10)
    assert rows(out["out"], "open", "close", "trade_count") == [(1.0, 3.0, 2)]
    assert stats.counters.get("late", 0) == 0


@pytest.mark.asyncio
async def test_finish_emits_every_open_window(make_trades: Any) -> None:
    trades = make_trades([("AAPL", 10, 1.0, 1), ("MSFT", 70, 2.0, 1), ("AAPL", 200, 3.0, 1)])
    out, _ = await run([trades], finish=False)
    assert rows(out["out"], "symbol") == [("AAPL",), ("MSFT",)]
    out, _ = await run([trades])
    assert rows(out["out"], "symbol") == [("AAPL",), ("MSFT",), ("AAPL",)]
    assert minutes(out["out"]) == [0, 1, 3]


@pytest.mark.asyncio
async def test_allowed_lateness_re_emits_the_window_as_a_revision(make_trades: Any) -> None:
    batches = [
        make_trades([("AAPL", 10, 1.0, 2), ("AAPL", 70, 5.0, 1)]),  # 0:00 fires
        make_trades([("AAPL", 50, 3.0, 2)]),  # within lateness: a revision of 0:00
        make_trades([("AAPL", 100, 6.0, 1)]),  # 0:00 is still kept, but unchanged
        make_trades([("AAPL", 125, 7.0, 1)]),  # watermark 2:05: 0:00 purged, 1:00 fires
        make_trades([("AAPL", 30, 9.0, 1)]),  # too late
    ]
    out, stats = await run(batches, allowed_lateness=60)
    bars = out["out"]
    assert minutes(bars) == [0, 0, 1, 2]
    assert rows(bars, "open", "high", "close", "volume", "trade_count") == [
        (1.0, 1.0, 1.0, 2.0, 1),
        (1.0, 3.0, 3.0, 4.0, 2),
        (5.0, 6.0, 6.0, 2.0, 2),
        (7.0, 7.0, 7.0, 1.0, 1),
    ]
    assert bars.column("vwap").to_pylist()[1] == pytest.approx(2.0)
    assert rows(out["late"], "price") == [(9.0,)]
    assert stats.counters["late"] == 1


@pytest.mark.asyncio
async def test_late_rows_go_unchanged_to_the_late_output_and_are_counted(
    make_trades: Any,
) -> None:
    on_time = make_trades([("AAPL", 10, 1.0, 1), ("MSFT", 61, 2.0, 1)])
    mixed = make_trades([("AAPL", 20, 3.0, 4), ("AAPL", 62, 4.0, 1), ("MSFT", 59, 5.0, 2)])
    out, stats = await run([on_time, mixed])
    late = out["late"]
    assert late.schema == records.TRADES
    assert late.to_pylist() == mixed.take([0, 2]).to_pylist()
    assert stats.counters["late"] == 2
    assert rows(out["out"], "symbol", "trade_count") == [("AAPL", 1), ("AAPL", 1), ("MSFT", 1)]


@pytest.mark.asyncio
async def test_lateness_is_decided_row_by_row_inside_a_batch(make_trades: Any) -> None:
    # one batch: 0:10 is on time, 1:05 moves the watermark, the next 0:20 is late
    trades = make_trades([("AAPL", 10, 1.0, 1), ("AAPL", 65, 2.0, 1), ("AAPL", 20, 3.0, 1)])
    out, stats = await run([trades])
    assert rows(out["late"], "price") == [(3.0,)]
    assert stats.counters["late"] == 1
    assert rows(out["out"], "open", "trade_count") == [(1.0, 1), (2.0, 1)]


@pytest.mark.asyncio
async def test_idle_timeout_emits_open_windows_while_the_stream_is_idle(
    make_trades: Any,
) -> None:
    TestingProvider.feed(
        "idle-trades",
        [make_trades([("AAPL", 10, 1.0, 1)]), make_trades([("AAPL", 40, 2.0, 1)])],
    )
    graph = Graph.build(
        [
            # the provider waits far longer than the idle timeout before each batch
            node("src", "testing_provider", name="idle-trades", delay=0.5),
            node("bars", "resample_ohlc", timeframe="1m", idle_timeout=0.05),
            node("out", "collect"),
        ],
        ["src -> bars", "bars -> out"],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes()).run()
    bars = collect("out")
    assert bars is not None
    # the 0:00 bar went out during the pause (one trade), then its revision (two trades);
    # without the idle timeout, one bar would come out at the end of the stream
    assert rows(bars, "open", "close", "trade_count") == [(1.0, 1.0, 1), (1.0, 2.0, 2)]
    assert result.nodes["bars"].counters.get("late", 0) == 0


# -- other inputs -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_quotes_make_bars_of_the_chosen_price() -> None:
    quotes = records.from_models(
        [
            make_quote(ts=T0 + timedelta(seconds=1), bid=10.0, ask=12.0),
            make_quote(ts=T0 + timedelta(seconds=2), bid=13.0, ask=13.5),
            make_quote(ts=T0 + timedelta(seconds=3), bid=9.0, ask=9.5),
            make_quote(ts=T0 + timedelta(seconds=4), bid=10.0, ask=10.2),
        ]
    )
    expected = {
        "mid": (11.0, 13.25, 9.25, 10.1),
        "bid": (10.0, 13.0, 9.0, 10.0),
        "ask": (12.0, 13.5, 9.5, 10.2),
    }
    for price, ohlc in expected.items():
        out, _ = await run([quotes], quote_price=price)
        bars = out["out"]
        assert rows(bars, "open", "high", "low", "close") == [pytest.approx(ohlc)]
        assert rows(bars, "volume", "trade_count", "vwap") == [(0.0, None, None)]
        assert len(records.to_models(bars)) == 1


def _bar(minute: int, **fields: Any) -> Any:
    return make_bar(start=T0 + timedelta(minutes=minute), **fields)


@pytest.mark.asyncio
async def test_bars_roll_up_into_a_higher_timeframe() -> None:
    base = records.from_models(
        [
            _bar(2, open=3, high=4, low=1, close=2, volume=10, trade_count=5, vwap=2.0),
            _bar(0, open=5, high=6, low=4, close=5, volume=30, trade_count=None, vwap=5.0),
            _bar(4, open=2, high=9, low=2, close=8, volume=0, trade_count=2, vwap=None),
            _bar(5, open=7, high=7, low=7, close=7, volume=1, trade_count=None, vwap=None),
        ]
    )
    out, _ = await run([base], timeframe="5m")
    bars = out["out"]
    assert set(bars.column("timeframe").to_pylist()) == {"5m"}
    assert minutes(bars) == [0, 5]
    assert rows(bars, "open", "high", "low", "close", "volume", "trade_count") == [
        (5.0, 9.0, 1.0, 8.0, 40.0, None),  # one bar's count is unknown: so is the sum
        (7.0, 7.0, 7.0, 7.0, 1.0, None),
    ]
    # volume-weighted vwap; a bar with volume but no vwap makes it unknown
    assert bars.column("vwap").to_pylist() == [pytest.approx((20 + 150) / 40), None]
    assert len(records.to_models(bars)) == 2


@pytest.mark.asyncio
async def test_a_bar_that_arrives_again_replaces_the_earlier_one() -> None:
    first = records.from_models(
        [
            _bar(0, open=5, high=6, low=4, close=5, volume=30, trade_count=3, vwap=5.0),
            _bar(1, open=5, high=7, low=5, close=6, volume=10, trade_count=1, vwap=6.0),
            _bar(5, open=6, high=6, low=6, close=6, volume=1, trade_count=1, vwap=6.0),
        ]
    )
    # the 0:01 bar again, revised upstream (one more trade), after the 0:00 5m bar fired
    revised = records.from_models(
        [_bar(1, open=5, high=8, low=5, close=8, volume=12, trade_count=2, vwap=6.5, revision=1)]
    )
    out, _ = await run([first, revised, revised], timeframe="5m", allowed_lateness=600)
    bars = out["out"]
    # the same revision twice changes nothing: it is not emitted again
    assert minutes(bars) == [0, 0, 5]
    assert rows(bars, "high", "close", "volume", "trade_count") == [
        (7.0, 6.0, 40.0, 4),
        (8.0, 8.0, 42.0, 5),
        (6.0, 6.0, 1.0, 1),
    ]
    assert bars.column("vwap").to_pylist()[1] == pytest.approx((150 + 78) / 42)
    # versions: as of the input bars' as_of; revision: their revision + 1, summed
    assert rows(bars, "as_of", "revision", "reason") == [
        (AS_OF, 2, None),
        (AS_OF, 3, "late"),  # the 0:00 bar had fired: a late revision
        (AS_OF, 1, None),
    ]


@pytest.mark.asyncio
async def test_an_older_version_of_an_input_bar_changes_nothing() -> None:
    newer = records.from_models([_bar(1, close=185.8, revision=2)])
    older = records.from_models([_bar(1, close=185.0, revision=1)])
    out, _ = await run([newer, older], timeframe="5m", **LOOSE)
    assert rows(out["out"], "close", "revision") == [(185.8, 3)]


@pytest.mark.asyncio
async def test_one_node_reads_one_kind_of_record(make_trades: Any) -> None:
    quotes = records.from_models([make_quote()])
    with pytest.raises(RecordError, match="one kind of record"):
        await run([make_trades([("AAPL", 1, 10.0, 1)]), quotes])


@pytest.mark.asyncio
async def test_bars_of_a_timeframe_that_does_not_divide_the_output_are_an_error() -> None:
    five = records.from_models([_bar(0, timeframe=Timeframe.parse("5m"))])
    with pytest.raises(RecordError, match=r"node 'bars'.*timeframe.*5m.*1m") as caught:
        await run([five], timeframe="1m")
    assert caught.value.field == "timeframe"


@pytest.mark.asyncio
async def test_tables_of_another_kind_are_an_error() -> None:
    table = pa.table({"symbol": ["AAPL"], "value": [1.0]})
    with pytest.raises(RecordError, match="node 'bars'"):
        await run([table])


# -- calendar -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_calendar_sends_records_outside_its_sessions_aside(make_trades: Any) -> None:
    day = datetime(2024, 1, 1, tzinfo=UTC)  # a NYSE holiday; 2024-01-02 opens 14:30 UTC
    hours = 3600
    trades = make_trades(
        [
            ("AAPL", 15 * hours, 1.0, 1),  # holiday
            ("AAPL", 24 * hours + 14.5 * hours - 1, 2.0, 1),  # one second before the open
            ("AAPL", 24 * hours + 14.5 * hours, 3.0, 1),  # the open
            ("AAPL", 24 * hours + 21 * hours - 1, 4.0, 1),  # the last second
            ("AAPL", 24 * hours + 21 * hours, 5.0, 1),  # the close
        ],
        t0=day,
    )
    op = resample(calendar="XNYS")
    assert op.outputs == ("out", "late", "outside_session")
    out, stats = await run_operator(op, [trades])
    assert rows(out["outside_session"], "price") == [(1.0,), (2.0,), (5.0,)]
    assert stats.counters["outside_session"] == 3
    assert rows(out["out"], "open", "trade_count") == [(3.0, 1), (4.0, 1)]
    assert "late" not in out


def test_without_a_calendar_there_is_no_outside_session_output() -> None:
    assert resample().outputs == ("out", "late")


# -- configuration errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"timeframe": "7m"}, "timeframe"),
        ({"timeframe": "1m", "quote_price": "last"}, "quote_price"),
        ({"timeframe": "1m", "allowed_lateness": -1}, "allowed_lateness"),
        ({"timeframe": "1m", "idle_timeout": 0}, "idle_timeout"),
        ({"timeframe": "1m", "source": "has space"}, "source"),
        ({"timeframe": "1m", "calendar": "NOPE"}, "unknown calendar 'NOPE'"),
        ({"timeframe": "1m", "window": "1m"}, "window"),
    ],
)
def test_bad_params_are_a_graph_error_naming_the_node(params: dict[str, Any], message: str) -> None:
    graph = Graph.build(
        [
            node("src", "testing_provider", name="x"),
            node("bars", "resample_ohlc", **params),
            node("out", "collect"),
        ],
        ["src -> bars", "bars -> out"],
    )
    with pytest.raises(GraphError, match=message) as caught:
        graph.validated(registry_with_fakes())
    assert caught.value.node_id == "bars"


# -- real data ----------------------------------------------------------------------------


def btcusdt_trades() -> pa.Table:
    raw = pq.read_table(DATA)
    n = raw.num_rows
    table = records.check(
        pa.table(
            {
                "symbol": pa.array(["BTC/USDT"] * n, pa.string()),
                "ts": raw.column("timestamp").cast(records.TIMESTAMP),
                "price": raw.column("price"),
                "size": raw.column("quantity"),
                "exchange": pa.array(["binance"] * n, pa.string()),
                "trade_id": raw.column("trade_id").cast(pa.string()),
            }
        ),
        records.Kind.TRADES,
        source=str(DATA),
    )
    assert len(records.to_models(table)) == n  # valid core trades
    return table


@pytest.mark.parametrize("timeframe", ["1s", "5s", "1m"])
@pytest.mark.asyncio
async def test_btcusdt_trades_make_the_same_bars_as_pandas(timeframe: str) -> None:
    trades = btcusdt_trades()  # 46 seconds of trades, many in the same millisecond
    out, stats = await run(split(trades, [300, 301, 1000, 1500]), timeframe=timeframe)
    assert "late" not in out
    assert stats.counters.get("late", 0) == 0
    bars = out["out"]
    assert len(records.to_models(bars)) == bars.num_rows
    assert_bars_equal(final_revisions(bars), oracle(trades, timeframe))
    assert sum(bars.column("trade_count").to_pylist()) == trades.num_rows


@pytest.mark.parametrize("batch_size", [1, 5, 7, 1000])
@pytest.mark.asyncio
async def test_binance_trades_without_trade_ids_are_told_apart_by_ordinals(
    tmp_path: Path, batch_size: int
) -> None:
    """The real Binance trades without their trade id: 12 of the 2,001 repeat another in
    symbol, ts, price and size. The replay numbers identical ticks, the same way whatever
    the batch size, so every trade keeps a key of its own: none is merged, none dropped
    as a duplicate, and the bars equal pandas'."""
    raw = pq.read_table(DATA)
    path = tmp_path / "btcusdt-trades-no-ids.parquet"
    pq.write_table(raw.drop_columns(["trade_id"]), path)
    params = {"path": str(path), "symbol": "BTC/USDT", "batch_size": batch_size}
    provider = ReplayProvider("replay", ReplayParams.model_validate(params))
    batches = list(provider.read())
    trades = pa.concat_tables(batches)
    assert trades.num_rows == raw.num_rows == 2001
    assert trades.column("trade_id").null_count == 2001
    assert trades.column("ordinal").to_pylist() == binance_ordinals()
    key = list(records.KEYS[records.Kind.TRADES])
    assert trades.select(key).group_by(key, use_threads=False).aggregate([]).num_rows == 2001
    same = ["symbol", "ts", "price", "size"]
    assert trades.select(same).group_by(same, use_threads=False).aggregate([]).num_rows == 1989
    deduplicated, stats = await run_operator(Deduplicate("d", DeduplicateParams()), batches)
    assert deduplicated["out"].num_rows == 2001
    assert stats.counters.get("deduplicated", 0) == 0
    out, stats = await run(batches, timeframe="5s")
    assert stats.counters.get("late", 0) == 0
    assert_bars_equal(final_revisions(out["out"]), oracle(trades, "5s"))
    assert sum(final_revisions(out["out"])["trade_count"]) == 2001


@functools.cache
def binance_ordinals() -> list[int]:
    """The ordinals by definition: each trade's position among the earlier trades of the
    file with the same symbol, ts and exchange (all of one symbol and no exchange here)."""
    seen: Counter[Any] = Counter()
    out = []
    for ts in pq.read_table(DATA).column("timestamp").cast(pa.int64()).to_pylist():
        out.append(seen[ts])
        seen[ts] += 1
    return out


@pytest.mark.asyncio
async def test_real_1m_bars_roll_up_into_the_same_1h_bars_as_pandas() -> None:
    frame = pd.read_csv(BARS_1M)
    starts = pd.to_datetime(frame["timestamp"]).dt.tz_localize("UTC")
    n = len(frame)
    base = records.check(
        pa.table(
            {
                "source": pa.array(["perp"] * n, pa.string()),
                "symbol": pa.array(["BTC-PERP"] * n, pa.string()),
                "timeframe": pa.array(["1m"] * n, pa.string()),
                "start": pa.array(starts).cast(records.TIMESTAMP),
                **{name: pa.array(frame[name], pa.float64()) for name in ("open", "high", "low")},
                "close": pa.array(frame["close"], pa.float64()),
                "volume": pa.array(frame["volume"], pa.float64()),
            }
        ),
        records.Kind.BARS,
        source=str(BARS_1M),
    )
    out, _ = await run(split(base, range(0, n, 4096)), timeframe="1h")
    bars = out["out"]
    assert len(records.to_models(bars)) == bars.num_rows
    bins = frame.set_index(starts).resample("1h", label="left", closed="left")
    expected = pd.DataFrame(
        {
            "open": bins["open"].first(),
            "high": bins["high"].max(),
            "low": bins["low"].min(),
            "close": bins["close"].last(),
            "volume": bins["volume"].sum(),
            "n": bins["open"].count(),
        }
    )
    expected = expected[expected["n"] > 0]
    actual = bars.to_pandas()
    assert actual["start"].tolist() == expected.index.tolist()
    for name in ("open", "high", "low", "close"):
        assert actual[name].tolist() == expected[name].tolist(), name
    np.testing.assert_allclose(actual["volume"], expected["volume"], rtol=1e-12)
    assert actual["trade_count"].isna().all()
    assert actual["vwap"].isna().all()


# -- properties ---------------------------------------------------------------------------

_SYMBOLS = ["AAA", "BBB", "C/D"]
trade_rows = st.lists(
    st.tuples(
        st.sampled_from(_SYMBOLS),
        st.integers(0, 400).map(lambda s: s * 0.5),  # many exact ties
        st.integers(1, 2000).map(lambda p: p / 8),
        st.sampled_from([0.0, 0.5, 1.0, 3.0, 100.0]),
    ),
    min_size=1,
    max_size=120,
)
cuts = st.lists(st.integers(0, 200), max_size=6)


@settings(max_examples=60, deadline=None)
@given(data=trade_rows, cuts=cuts, timeframe=st.sampled_from(["1s", "15s", "1m", "2m"]))
@pytest.mark.asyncio
async def test_bars_equal_the_pandas_oracle(
    make_trades: Any, data: list[Any], cuts: list[int], timeframe: str
) -> None:
    trades = make_trades(data)
    out, stats = await run(split(trades, cuts), timeframe=timeframe, **LOOSE)
    assert stats.counters.get("late", 0) == 0
    bars = out["out"]
    assert len(records.to_models(bars)) == bars.num_rows
    assert_bars_equal(final_revisions(bars), oracle(trades, timeframe))


@settings(max_examples=60, deadline=None)
@given(data=trade_rows, cuts=cuts, lateness=st.sampled_from([0, 5, 60]))
@pytest.mark.asyncio
async def test_any_split_into_batches_gives_the_same_bars_and_late_rows(
    make_trades: Any, data: list[Any], cuts: list[int], lateness: int
) -> None:
    trades = make_trades(data)
    whole, _ = await run([trades], allowed_lateness=lateness)
    parts, _ = await run(split(trades, cuts), allowed_lateness=lateness)
    assert_bars_equal(final_revisions(parts["out"]), final_revisions(whole["out"]))
    assert ("late" in parts) == ("late" in whole)
    if "late" in whole:
        assert parts["late"].to_pylist() == whole["late"].to_pylist()


@settings(max_examples=60, deadline=None)
@given(data=trade_rows, cuts=cuts)
@pytest.mark.asyncio
async def test_1m_bars_rolled_up_to_5m_equal_trades_resampled_to_5m(
    make_trades: Any, data: list[Any], cuts: list[int]
) -> None:
    trades = make_trades(data)
    one, _ = await run(split(trades, cuts), timeframe="1m", **LOOSE)
    rolled, _ = await run(split(one["out"], cuts), timeframe="5m", **LOOSE)
    direct, _ = await run([trades], timeframe="5m", **LOOSE)
    assert_bars_equal(final_revisions(rolled["out"]), final_revisions(direct["out"]))


@settings(max_examples=60, deadline=None)
@given(data=trade_rows, cuts=cuts, lateness=st.sampled_from([0, 2, 10]))
@pytest.mark.asyncio
async def test_every_row_is_in_a_final_bar_or_in_the_late_output(
    make_trades: Any, data: list[Any], cuts: list[int], lateness: int
) -> None:
    trades = make_trades(data)
    out, stats = await run(split(trades, cuts), timeframe="15s", allowed_lateness=lateness)
    late = out.get("late", records.empty(records.Kind.TRADES))
    counted = int(final_revisions(out["out"])["trade_count"].sum())
    assert counted + late.num_rows == trades.num_rows
    assert stats.counters.get("late", 0) == late.num_rows
    keys = ["symbol", "ts", "price", "size"]
    assert not Counter(rows(late, *keys)) - Counter(rows(trades, *keys))


@settings(max_examples=60, deadline=None)
@given(data=trade_rows, cuts=cuts, lateness=st.sampled_from([0, 30, 90]))
@pytest.mark.asyncio
async def test_revised_1m_bars_roll_up_into_5m_bars_without_double_counting(
    make_trades: Any, data: list[Any], cuts: list[int], lateness: int
) -> None:
    trades = make_trades(data)
    one, _ = await run(split(trades, cuts), timeframe="1m", allowed_lateness=lateness)
    # every revision of every 1m bar goes on, in the order it was emitted
    five, _ = await run(split(one["out"], cuts), timeframe="5m", **LOOSE)
    late_rows = one.get("late", records.empty(records.Kind.TRADES))
    late = Counter(rows(late_rows, "symbol", "ts", "price", "size"))
    accepted = []
    for row, when in zip(data, utc_times(trades), strict=True):
        key = (row[0], when, float(row[2]), float(row[3]))
        if late[key]:
            late[key] -= 1
        else:
            accepted.append(row)
    assert sum(late.values()) == 0
    assert_bars_equal(final_revisions(five["out"]), oracle(make_trades(accepted), "5m"))


# -- versions -----------------------------------------------------------------------------

versioned_rows = st.lists(
    st.tuples(
        st.sampled_from(_SYMBOLS),
        st.integers(0, 400).map(lambda s: s * 0.5),
        st.integers(1, 2000).map(lambda p: p / 8),
        st.sampled_from([0.0, 1.0, 3.0]),
        st.none() | st.integers(0, 30).map(lambda s: s * 10**9),  # as_of, ns after T0
    ),
    min_size=1,
    max_size=120,
)


def versions(table: pa.Table) -> list[tuple[str, Any, int | None, int, str | None]]:
    """Each emitted bar's (symbol, start, as_of in ns or None, revision, reason), in order."""
    as_of = table.column("as_of").cast(pa.int64()).to_pylist()
    return [
        (symbol, start, a, revision, reason)
        for (symbol, start, revision, reason), a in zip(
            rows(table, "symbol", "start", "revision", "reason"), as_of, strict=True
        )
    ]


def assert_versions_increase(table: pa.Table) -> None:
    """Every emission of a window outranks the one before it: a greater (as_of, revision),
    a null as_of below any; only a re-emission can be late."""
    last: dict[tuple[str, Any], tuple[int, int]] = {}
    for symbol, start, as_of, revision, reason in versions(table):
        key = (symbol, start)
        version = (-1 if as_of is None else as_of, revision)
        if key in last:
            assert version > last[key], (key, last[key], version)
        else:
            assert reason is None, key
        last[key] = version


def final_versions(table: pa.Table) -> dict[tuple[str, Any], tuple[int | None, int]]:
    return {(s, start): (a, r) for s, start, a, r, _ in versions(table)}


def nano_rows(trades: pa.Table) -> list[tuple[str, int, int | None]]:
    """(symbol, ts, as_of) of each trade, times in nanoseconds."""
    return list(
        zip(
            trades.column("symbol").to_pylist(),
            trades.column("ts").cast(pa.int64()).to_pylist(),
            trades.column("as_of").cast(pa.int64()).to_pylist(),
            strict=True,
        )
    )


@settings(max_examples=60, deadline=None)
@given(
    data=versioned_rows,
    cuts=cuts,
    lateness=st.sampled_from([0, 5, 60]),
    timeframe=st.sampled_from(["15s", "1m"]),
)
@pytest.mark.asyncio
async def test_every_emission_of_a_bar_has_a_greater_version_for_any_split(
    make_trades: Any, data: list[Any], cuts: list[int], lateness: int, timeframe: str
) -> None:
    trades = make_trades([row[:4] for row in data], as_of=[row[4] for row in data])
    params = {"timeframe": timeframe, "allowed_lateness": lateness}
    whole, _ = await run([trades], **params)
    parts, _ = await run(split(trades, cuts), **params)
    again, _ = await run(split(trades, cuts), **params)
    for out in (whole, parts):
        assert_versions_increase(out["out"])
    # a replay of the same input emits the same versions (nothing from the wall clock)
    assert versions(again["out"]) == versions(parts["out"])
    # the final version of every bar does not depend on how the input was cut
    assert final_versions(parts["out"]) == final_versions(whole["out"])
    # and says what went into the bar: the records folded, the latest as_of among them
    late = whole.get("late", records.empty(records.Kind.TRADES))
    folded = Counter(nano_rows(trades))
    folded.subtract(Counter(nano_rows(late)))
    step = Timeframe.parse(timeframe).seconds * 10**9
    expected: dict[tuple[str, int], tuple[int | None, int]] = {}
    for (symbol, ts, as_of), count in folded.items():
        if count <= 0:
            continue
        known, revision = expected.get((symbol, ts // step * step), (None, 0))
        newest = max((v for v in (known, as_of) if v is not None), default=None)
        expected[(symbol, ts // step * step)] = (newest, revision + count)
    assert {
        (symbol, to_ns(start)): version
        for (symbol, start), version in final_versions(whole["out"]).items()
    } == expected
    # bars are the same as pandas' whatever the versions
    accepted = final_revisions(whole["out"])
    assert accepted["revision"].tolist() == accepted["trade_count"].tolist()


@settings(max_examples=40, deadline=None)
@given(data=versioned_rows, cuts=cuts, lateness=st.sampled_from([0, 30, 90]))
@pytest.mark.asyncio
async def test_rolled_up_bars_keep_increasing_versions(
    make_trades: Any, data: list[Any], cuts: list[int], lateness: int
) -> None:
    trades = make_trades([row[:4] for row in data], as_of=[row[4] for row in data])
    one, _ = await run(split(trades, cuts), timeframe="1m", allowed_lateness=lateness)
    five, _ = await run(split(one["out"], cuts), timeframe="5m", allowed_lateness=lateness)
    again, _ = await run(split(one["out"], cuts), timeframe="5m", allowed_lateness=lateness)
    assert_versions_increase(one["out"])
    assert_versions_increase(five["out"])
    assert versions(again["out"]) == versions(five["out"])
    # a 5m bar counts the records of its final 1m bars, each once
    final_one = final_revisions(one["out"])
    for row in final_revisions(five["out"]).itertuples():
        members = final_one[
            (final_one["symbol"] == row.symbol)
            & (final_one["start"] >= row.start)
            & (final_one["start"] < row.start + pd.Timedelta(minutes=5))
        ]
        assert row.revision == int((members["revision"] + 1).sum())


@pytest.mark.asyncio
async def test_open_and_close_follow_nanosecond_order(make_trades: Any) -> None:
    # four trades inside one microsecond, given out of order
    at = [0.000000003, 0.000000001, 0.000000004, 0.000000002]
    trades = make_trades([("AAPL", t, float(i + 1), 1) for i, t in enumerate(at)])
    out, _ = await run([trades])
    assert rows(out["out"], "open", "close", "high", "low") == [(2.0, 3.0, 4.0, 1.0)]

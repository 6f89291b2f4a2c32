import asyncio
import csv
import gzip
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_data_core.testing.servers import scaled
from market_data_core.timestamps import from_ns
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError, NodeError, RecordError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.providers.replay import ReplayParams, ReplayProvider, detect_format
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import collect, registry_with_fakes


def replay(path: Path | str, **params: Any) -> pa.Table:
    provider = ReplayProvider("replay", ReplayParams(path=str(path), **params))
    return pa.concat_tables(list(provider.read()))


def csv_rows(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


def utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- every real file -----------------------------------------------------------------------

CSV_BARS = [
    ("gbpusd-m1-bid-2012.csv.gz", "timestamp", {"symbol": "GBP/USD"}),
    (
        "btc-perp-20211231-20220201_1m.csv.gz",
        "timestamp",
        {"symbol": "BTC-PERP", "timezone": "UTC"},
    ),
    (
        "6EH4.XCME_1min_bars_20240101_20240131.csv.gz",
        "timestamp_utc",
        {"symbol": "6EH4.XCME", "timezone": "UTC"},
    ),
]


@pytest.mark.parametrize(("name", "ts_column", "params"), CSV_BARS)
def test_replays_every_bar_file(
    data_dir: Path, name: str, ts_column: str, params: dict[str, str]
) -> None:
    path = data_dir / name
    expected = csv_rows(path)
    table = replay(path, kind="bars", timeframe="1m", **params)
    assert table.num_rows == len(expected)
    assert records.kind_of(table) is records.Kind.BARS
    for index, row in ((0, expected[0]), (-1, expected[-1])):
        got = table.slice(index % table.num_rows, 1).to_pylist()[0]
        assert got["start"] == utc(row[ts_column])
        for field in ("open", "high", "low", "close"):
            assert got[field] == float(row[field])
        assert got["volume"] == float(row.get("volume", 0.0))
        assert got["symbol"] == params["symbol"]
        assert (got["source"], got["timeframe"]) == ("replay", "1m")


def test_replays_the_usdjpy_ticks_as_quotes(data_dir: Path) -> None:
    path = data_dir / "usdjpy-ticks.csv"
    expected = csv_rows(path)
    table = replay(path, kind="quotes", symbol="USD/JPY")
    assert table.num_rows == len(expected) == 1000
    for index in (0, -1):
        got = table.slice(index % table.num_rows, 1).to_pylist()[0]
        row = expected[index]
        assert got["ts"] == utc(row["timestamp"])
        assert (got["bid"], got["ask"]) == (float(row["bid"]), float(row["ask"]))
        assert (got["bid_size"], got["ask_size"]) == (0.0, 0.0)


def test_replays_the_binance_trades_parquet(data_dir: Path) -> None:
    path = data_dir / "btcusdt-trades.parquet"
    expected = pq.read_table(path).to_pylist()
    table = replay(path, kind="trades", symbol="BTCUSDT")
    assert table.num_rows == len(expected) == 2001
    for index in (0, -1):
        got = table.slice(index % table.num_rows, 1).to_pylist()[0]
        row = expected[index]
        assert got["ts"] == row["timestamp"]
        assert (got["price"], got["size"]) == (row["price"], row["quantity"])
        assert got["trade_id"] == str(row["trade_id"])
        assert got["side"] == ("sell" if row["buyer_maker"] == "True" else "buy")


def test_replays_the_binance_quotes_parquet_with_its_symbol_column(data_dir: Path) -> None:
    path = data_dir / "btcusdt-quotes.parquet"
    expected = pq.read_table(path).to_pylist()
    table = replay(path, kind="quotes")
    assert table.num_rows == len(expected) == 451
    for index in (0, -1):
        got = table.slice(index % table.num_rows, 1).to_pylist()[0]
        row = expected[index]
        assert got["ts"] == row["timestamp"]
        assert got["symbol"] == row["symbol"] == "BTC/USDT"
        for field in ("bid", "ask", "bid_size", "ask_size"):
            assert got[field] == row[field]


def test_batches_have_batch_size_rows(data_dir: Path) -> None:
    provider = ReplayProvider(
        "r",
        ReplayParams(
            path=str(data_dir / "usdjpy-ticks.csv"), kind="quotes", symbol="X", batch_size=300
        ),
    )
    sizes = [t.num_rows for t in provider.read()]
    assert sizes == [300, 300, 300, 100]


# -- errors name the file, the line and the field -------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_bad_number_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "trades.csv",
        "ts,symbol,price,size\n"
        "2024-01-02T14:30:00Z,AAPL,185.1,100\n"
        "2024-01-02T14:30:01Z,AAPL,185.2,100\n"
        "2024-01-02T14:30:02Z,AAPL,abc,100\n",
    )
    with pytest.raises(RecordError) as info:
        replay(path)
    error = info.value
    assert (error.source, error.line, error.field) == (str(path), 4, "price")
    assert f"{path}:4" in str(error)
    assert "'abc'" in str(error)


def test_a_negative_size_after_a_blank_line_names_the_physical_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "trades.csv",
        "ts,symbol,price,size\n"
        "2024-01-02T14:30:00Z,AAPL,185.1,100\n"
        "\n"
        "2024-01-02T14:30:02Z,AAPL,185.3,-5\n",
    )
    with pytest.raises(RecordError) as info:
        replay(path)
    assert (info.value.line, info.value.field) == (4, "size")
    assert "negative" in str(info.value)


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = write(
        tmp_path / "trades.csv",
        "ts,symbol,price,size\n\n2024-01-02T14:30:00Z,AAPL,185.1,100\n\n\n"
        "2024-01-02T14:30:01Z,AAPL,185.2,50\n\n",
    )
    table = replay(path)
    assert table.column("size").to_pylist() == [100.0, 50.0]


def test_a_crossed_quote_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "quotes.csv",
        "timestamp,bid,ask\n2024-01-02 14:30:00+00:00,1.1,1.2\n2024-01-02 14:30:01+00:00,1.3,1.2\n",
    )
    with pytest.raises(RecordError) as info:
        replay(path, kind="quotes", symbol="EURUSD")
    assert (info.value.line, info.value.field) == (3, "bid")


def test_a_row_with_too_many_fields_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "trades.csv",
        "ts,symbol,price,size\n2024-01-02T14:30:00Z,AAPL,185.1,100\n2024-01-02T14:30:00Z,AAPL,1,2,3\n",
    )
    with pytest.raises(RecordError) as info:
        replay(path)
    assert info.value.line == 3


def test_naive_timestamps_need_a_timezone(data_dir: Path) -> None:
    with pytest.raises(RecordError, match="set `timezone: UTC`") as info:
        replay(
            data_dir / "btc-perp-20211231-20220201_1m.csv.gz",
            kind="bars",
            symbol="BTC",
            timeframe="1m",
        )
    assert info.value.field == "start"
    assert "2021-12-31 23:01:00" in str(info.value)


def test_a_timezone_places_naive_timestamps(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "time,price,size\n2024-07-01 09:30:00,10,1\n")
    table = replay(path, symbol="X", timezone="America/New_York")
    assert table.column("ts")[0].as_py() == datetime(2024, 7, 1, 13, 30, tzinfo=UTC)


def test_a_bad_timestamp_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        "ts,price,size\n2024-01-02T14:30:00Z,10,1\n2024-01-02T14:30:01Z,10,1\nyesterday,10,1\n",
    )
    with pytest.raises(RecordError, match="is not a timestamp") as info:
        replay(path, symbol="X")
    assert (info.value.line, info.value.field) == (4, "ts")


def test_misaligned_bars_name_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bars.csv",
        "timestamp,open,high,low,close\n2024-01-02T14:30:00Z,1,2,0.5,1.5\n2024-01-02T14:31:30Z,1,2,0.5,1.5\n",
    )
    with pytest.raises(RecordError, match="not aligned to timeframe 1m") as info:
        replay(path, kind="bars", symbol="X", timeframe="1m")
    assert (info.value.line, info.value.field) == (3, "start")


def test_a_missing_column_says_how_to_map_it(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "ts,px,size\n2024-01-02T14:30:00Z,10,1\n")
    with pytest.raises(RecordError, match=r"no column for 'price'.*columns: \{price: <column>\}"):
        replay(path, symbol="X")
    table = replay(path, symbol="X", columns={"price": "px"})
    assert table.column("price").to_pylist() == [10.0]


def test_no_symbol_says_to_set_one(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "ts,price,size\n2024-01-02T14:30:00Z,10,1\n")
    with pytest.raises(RecordError, match="set symbol: <name>"):
        replay(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="file not found") as info:
        replay(tmp_path / "nope.csv", symbol="X")
    assert info.value.source == str(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"path": "x.txt"}, "cannot tell the format"),
        ({"path": "x.csv", "columns": {"prize": "p"}}, "unknown field"),
        ({"path": "x.csv", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"path": "x.csv", "timeframe": "7x"}, "timeframe"),
        ({"path": "x.csv", "symbol": "A", "columns": {"symbol": "s"}}, "not both"),
        ({"path": "x.csv", "symbol": "A B"}, "symbol"),
        ({"path": "x.csv", "kind": "bars", "source": "my source"}, "source"),
    ],
)
def test_bad_params_fail_validation_naming_the_node(params: dict[str, Any], message: str) -> None:
    graph = Graph.build([node("src", "replay", **params), node("out", "null")], ["src -> out"])
    with pytest.raises(GraphError, match=message) as info:
        graph.validated()
    assert info.value.node_id == "src"


# -- other formats and encodings --------------------------------------------------------------


def test_ndjson_gz_with_epoch_milliseconds_and_a_bad_line(tmp_path: Path) -> None:
    rows = [
        {"t": 1704205800000, "sym": "AAPL", "price": 185.5, "qty": 10},
        {"t": 1704205801000, "sym": "AAPL", "price": 185.6, "qty": 20},
    ]
    path = tmp_path / "trades.ndjson.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows) + "\n")
    assert detect_format(path) == "ndjson"
    table = replay(path, columns={"ts": "t", "symbol": "sym"})
    assert table.column("ts").to_pylist() == [
        datetime(2024, 1, 2, 14, 30, tzinfo=UTC),
        datetime(2024, 1, 2, 14, 30, 1, tzinfo=UTC),
    ]
    assert table.column("size").to_pylist() == [10.0, 20.0]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n\n" + '{"t": 1, "sym": "A", "price": "x", "qty": 1}\n')
    with pytest.raises(RecordError) as info:
        replay(bad, columns={"ts": "t", "symbol": "sym"})
    assert (info.value.line, info.value.field) == (3, "price")

    broken = tmp_path / "broken.ndjson"
    broken.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(RecordError, match="not JSON") as info:
        replay(broken, columns={"ts": "t", "symbol": "sym"})
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("unit", "value"), [("s", 1704205800), ("us", 1704205800000000), ("ns", 1704205800000000000)]
)
def test_epoch_units(tmp_path: Path, unit: str, value: int) -> None:
    path = write(tmp_path / "t.csv", f"ts,price,size\n{value},1,1\n")
    for given in ("auto", unit):
        table = replay(path, symbol="X", timestamp_unit=given)
        assert table.column("ts")[0].as_py() == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def test_conditions_and_sides_from_text(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        'ts,symbol,price,size,side,conditions\n2024-01-02T14:30:00Z,A,1,1,BUY,"[""@"",""T""]"\n'
        "2024-01-02T14:30:01Z,A,1,1,s,\n",
    )
    table = replay(path)
    assert table.column("side").to_pylist() == ["buy", "sell"]
    assert table.column("conditions").to_pylist() == [["@", "T"], None]


# -- nanoseconds, versions, ordinals ------------------------------------------------------------

NANOS = [1704205800123456789, 1704205800123456790, 1704205800999999999, 1704205801000000001]
"""Event times that only nanoseconds tell apart (two in one microsecond)."""
RECEIVED = [n + 1_000 for n in NANOS]


def nano_file(directory: Path, form: str) -> tuple[Path, dict[str, Any]]:
    """Four trades stamped to the nanosecond (and their receive times), in ``form``:
    ISO text with nine digits (CSV), integer nanoseconds (NDJSON, ``timestamp_unit: ns``)
    or ``timestamp[ns]`` (Parquet); with the replay params that read it."""
    prices = [1.0, 2.0, 3.0, 4.0]
    if form == "csv":
        text = [from_ns(n).isoformat() for n in (*NANOS, *RECEIVED)]  # nine digits
        lines = [f"{text[i]},{text[4 + i]},X,{prices[i]},1" for i in range(4)]
        path = write(
            directory / "in.csv", "timestamp,ts_recv,symbol,price,size\n" + "\n".join(lines)
        )
        return path, {}
    if form == "ndjson":
        rows = [
            {"ts": n, "recv_ts": r, "symbol": "X", "price": p, "size": 1}
            for n, r, p in zip(NANOS, RECEIVED, prices, strict=True)
        ]
        path = write(directory / "in.ndjson", "".join(json.dumps(r) + "\n" for r in rows))
        return path, {"timestamp_unit": "ns"}
    table = pa.table(
        {
            "time": pa.array(NANOS, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "received_at": pa.array(RECEIVED, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "ticker": ["X"] * 4,
            "price": prices,
            "qty": [1.0] * 4,
        }
    )
    path = directory / "in.parquet"
    pq.write_table(table, path)
    return path, {}


def nanos_of(table: pa.Table, column: str) -> list[int]:
    return table.column(column).cast(pa.int64()).to_pylist()


@pytest.mark.parametrize("source", ["csv", "ndjson", "parquet"])
@pytest.mark.parametrize("target", [".csv", ".ndjson", ".parquet"])
@pytest.mark.asyncio
async def test_nanoseconds_survive_a_replay_into_a_file_exactly(
    tmp_path: Path, source: str, target: str
) -> None:
    path, params = nano_file(tmp_path, source)
    read = replay(path, **params)
    assert nanos_of(read, "ts") == NANOS
    assert nanos_of(read, "received_at") == RECEIVED
    out = tmp_path / f"out{target}"
    graph = Graph.build(
        [node("src", "replay", path=str(path), **params), node("out", "file", path=str(out))],
        ["src -> out"],
    )
    await asyncio.wait_for(GraphRuntime(graph).run(), scaled(30))
    back = replay(out)
    assert nanos_of(back, "ts") == NANOS
    assert nanos_of(back, "received_at") == RECEIVED
    assert nanos_of(back, "as_of") == nanos_of(read, "as_of")
    assert back.equals(read)
    if target != ".parquet":  # text: nine digits where a microsecond does not say it all
        assert "2024-01-02T14:30:00.123456789Z" in out.read_text()


def test_as_of_defaults_to_the_file_modification_time_to_the_nanosecond(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "ts,price,size\n2024-01-02T14:30:00Z,1,1\n")
    mtime = 1704300000123456789
    os.utime(path, ns=(mtime, mtime))
    stamped = os.stat(path).st_mtime_ns  # what the filesystem keeps of it
    first, again = replay(path, symbol="X"), replay(path, symbol="X")
    assert nanos_of(first, "as_of") == [stamped]
    assert again.equals(first)  # a rerun on the unchanged file: the same versions
    given = replay(path, symbol="X", as_of="2024-01-05T00:00:00.000000001Z")
    assert nanos_of(given, "as_of") == [1704412800000000001]


def test_an_as_of_column_wins_and_its_nulls_take_the_default(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        "ts,price,size,as_of,revision,reason\n"
        "2024-01-02T14:30:00Z,1,1,2024-01-04T00:00:00.5Z,2,correction\n"
        "2024-01-02T14:30:01Z,1,1,,,\n",
    )
    table = replay(path, symbol="X", as_of="2024-01-05T00:00:00Z")
    assert records.utc(table, "as_of") == [
        datetime(2024, 1, 4, 0, 0, 0, 500000, tzinfo=UTC),
        datetime(2024, 1, 5, tzinfo=UTC),
    ]
    assert table.column("revision").to_pylist() == [2, None]
    assert table.column("reason").to_pylist() == ["correction", None]


def test_quotes_read_their_venue_sequence_and_get_ordinals_without_one(tmp_path: Path) -> None:
    path = write(
        tmp_path / "q.csv",
        "ts,symbol,bid,ask,seq\n"
        "2024-01-02T14:30:00Z,X,1,2,7\n"
        "2024-01-02T14:30:00Z,X,1,2,\n"
        "2024-01-02T14:30:00Z,X,1,2,\n"
        "2024-01-02T14:30:00Z,Y,1,2,\n",
    )
    for size in (1, 2, 10):
        table = replay(path, kind="quotes", batch_size=size)
        assert table.column("sequence").to_pylist() == [7, None, None, None]
        assert table.column("ordinal").to_pylist() == [0, 0, 1, 0]


# -- pacing and backpressure -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_speed_sleeps_event_time_gaps_divided_by_speed(tmp_path: Path, make_context) -> None:
    seconds = [0.0, 1.0, 3.0, 3.0, 7.0, 7.01]
    lines = "".join(f"{1704205800 + s},1,1\n" for s in seconds)
    path = write(tmp_path / "t.csv", "ts,price,size\n" + lines)
    provider = ReplayProvider("r", ReplayParams(path=str(path), symbol="X", speed=4, batch_size=4))
    now = [50.0]
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        now[0] += delay

    provider.clock = lambda: now[0]
    provider.sleep = sleep
    await provider.open(make_context("r"))
    try:
        slices = [b.num_rows async for b in provider.batches()]
    finally:
        await provider.close()
    # rows closer than one pacing quantum (50 ms at speed 4 = 0.2 s of event time) go together
    assert slices == [1, 1, 2, 2]
    assert sleeps == pytest.approx([1.0 / 4, 2.0 / 4, 4.0 / 4])


@pytest.mark.asyncio
async def test_speed_zero_never_sleeps(data_dir: Path, make_context) -> None:
    provider = ReplayProvider(
        "r", ReplayParams(path=str(data_dir / "usdjpy-ticks.csv"), kind="quotes", symbol="X")
    )

    async def sleep(delay: float) -> None:
        raise AssertionError("slept")

    provider.sleep = sleep
    await provider.open(make_context("r"))
    try:
        rows = sum([b.num_rows async for b in provider.batches()])
    finally:
        await provider.close()
    assert rows == 1000


@pytest.mark.asyncio
async def test_a_paused_replay_emits_nothing_until_resumed_and_drops_nothing(
    data_dir: Path, pausable_rate
) -> None:
    path = data_dir / "btcusdt-trades.parquet"
    graph = Graph.build(
        [
            node("src", "replay", path=str(path), symbol="BTCUSDT", batch_size=500),
            node("out", "collect"),
        ],
        ["src -> out"],
    )
    pausable_rate.pause()
    runtime = GraphRuntime(graph, registry=registry_with_fakes(), rate=pausable_rate)
    task = asyncio.create_task(runtime.run())
    await asyncio.wait_for(pausable_rate.waiting.wait(), timeout=scaled(10))
    assert runtime.stats["src"].items_out == 0
    assert runtime.stats["out"].items_in == 0
    pausable_rate.resume()
    result = await asyncio.wait_for(task, timeout=scaled(30))
    table = collect("out")
    assert table is not None
    assert table.num_rows == result.nodes["src"].items_out == 2001
    assert table.column("trade_id").to_pylist() == [
        str(i) for i in pq.read_table(path).column("trade_id").to_pylist()
    ]
    assert pausable_rate.acquired == [500, 500, 500, 500, 1]


@pytest.mark.asyncio
async def test_a_bad_file_fails_the_job_naming_node_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv", "ts,price,size\n2024-01-02T14:30:00Z,1,1\n2024-01-02T14:30:00Z,1,oops\n"
    )
    graph = Graph.build(
        [node("src", "replay", path=str(path), symbol="X"), node("out", "null")], ["src -> out"]
    )
    with pytest.raises(NodeError) as info:
        await GraphRuntime(graph).run()
    assert info.value.node_id == "src"
    assert f"{path}:3, field 'size'" in str(info.value)

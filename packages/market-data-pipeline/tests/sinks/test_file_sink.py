import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from market_data_core.testing import make_quote, make_trade
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError, NodeError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.providers.replay import ReplayParams, ReplayProvider
from market_data_pipeline.providers.synthetic import SyntheticParams, SyntheticProvider
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.sinks.files import FileSink, FileSinkParams, detect_format
from market_data_pipeline.testing import TestingProvider, registry_with_fakes


def synthetic(kind: str = "trades") -> list[pa.Table]:
    params = SyntheticParams.model_validate(
        {"kind": kind, "symbols": 3, "count": 2500, "batch_size": 1000}
    )
    return list(SyntheticProvider("gen", params).tables())


def replay(path: Path, kind: str) -> pa.Table:
    provider = ReplayProvider("r", ReplayParams.model_validate({"path": str(path), "kind": kind}))
    return pa.concat_tables(list(provider.read()))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def write_all(sink: FileSink, ctx: Any, batches: list[pa.Table]) -> None:
    await sink.open(ctx)
    try:
        for batch in batches:
            await sink.write(batch)
        await sink.flush()
    finally:
        await sink.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["trades", "quotes"])
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".ndjson"])
async def test_round_trip_through_the_replay_provider(
    tmp_path: Path, make_context, kind: str, suffix: str
) -> None:
    batches = synthetic(kind)
    path = tmp_path / "out" / f"{kind}{suffix}"
    sink = FileSink("file", FileSinkParams(path=str(path)))
    await write_all(sink, make_context("file"), batches)
    assert sink.format == detect_format(path)
    assert names(path.parent) == [path.name]  # no temporary file left
    expected = pa.concat_tables(batches)
    assert replay(path, kind).equals(expected)


@pytest.mark.asyncio
async def test_parquet_keeps_the_schema_and_values(tmp_path: Path, make_context) -> None:
    trades = records.from_models(
        [make_trade(conditions=("@", "T"), side="buy", trade_id="1"), make_trade(price=1.5)]
    )
    path = tmp_path / "t.parquet"
    await write_all(FileSink("f", FileSinkParams(path=str(path))), make_context(), [trades, trades])
    read = pq.read_table(path)
    assert read.schema.equals(records.TRADES, check_metadata=False)
    assert read.equals(pa.concat_tables([trades, trades]))


@pytest.mark.asyncio
async def test_csv_writes_lists_as_json_and_replay_reads_them_back(
    tmp_path: Path, make_context
) -> None:
    trades = records.from_models([make_trade(conditions=("@", "T")), make_trade(price=2.0)])
    path = tmp_path / "t.csv"
    await write_all(FileSink("f", FileSinkParams(path=str(path))), make_context(), [trades])
    raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert raw.column("conditions").to_pylist() == ['["@", "T"]', None]  # none: null
    assert replay(path, "trades").equals(trades)


@pytest.mark.asyncio
async def test_ndjson_lines_are_json_with_iso_utc_timestamps(tmp_path: Path, make_context) -> None:
    quotes = records.from_models([make_quote()])
    path = tmp_path / "q.jsonl"
    await write_all(FileSink("f", FileSinkParams(path=str(path))), make_context(), [quotes])
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {
        "symbol": "AAPL",
        "ts": "2024-01-02T14:30:00.000000Z",
        "bid": 185.24,
        "ask": 185.26,
        "bid_size": 300.0,
        "ask_size": 200.0,
        "exchange": None,
        "sequence": None,
        "received_at": None,
        "ordinal": 0,
        "as_of": "2024-01-03T00:00:00.000000Z",
        "revision": 0,
        "reason": None,
    }


@pytest.mark.asyncio
async def test_a_failed_run_leaves_no_file_and_keeps_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "trades.parquet"
    path.write_bytes(b"previous")
    good = records.from_models([make_trade()])
    bad = records.from_models([make_quote()])  # another schema: the sink fails on it
    TestingProvider.feed("mixed", [good, good, bad])
    graph = Graph.build(
        [node("src", "testing_provider", name="mixed"), node("file", "file", path=str(path))],
        ["src -> file"],
    )
    with pytest.raises(NodeError) as info:
        await GraphRuntime(graph, registry=registry_with_fakes()).run()
    assert info.value.node_id == "file"
    assert "does not match the file's schema" in str(info.value)
    assert path.read_bytes() == b"previous"
    assert names(tmp_path) == ["trades.parquet"]


@pytest.mark.asyncio
async def test_the_file_appears_only_once_the_input_ended(tmp_path: Path, make_context) -> None:
    path = tmp_path / "deep" / "dir" / "t.csv"
    sink = FileSink("f", FileSinkParams(path=str(path)))
    await sink.open(make_context())
    try:
        await sink.write(synthetic()[0])
        assert not path.exists()
        assert len(names(path.parent)) == 1  # the hidden temporary file
        await sink.flush()
        assert path.exists()
    finally:
        await sink.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".ndjson"])
async def test_no_rows_replace_a_previous_file_with_an_empty_one(
    tmp_path: Path, make_context, suffix: str
) -> None:
    """A run without rows must not leave a previous run's file for readers to take as its
    own: an empty file of the columns that would have come (here the graph's hint)."""
    path = tmp_path / f"bars{suffix}"
    await write_all(FileSink("f", FileSinkParams(path=str(path))), make_context(), synthetic())
    ctx = make_context()
    ctx.schema = records.BARS
    await write_all(FileSink("f", FileSinkParams(path=str(path))), ctx, [])
    if suffix == ".parquet":
        table = pq.read_table(path)
        assert table.num_rows == 0
        assert table.schema.equals(records.BARS, check_metadata=False)
    elif suffix == ".csv":
        assert path.read_text().splitlines() == [",".join(f'"{n}"' for n in records.BARS.names)]
    else:
        assert path.read_text() == ""


@pytest.mark.asyncio
async def test_no_rows_and_no_columns_known_fail_and_remove_the_stale_file(
    tmp_path: Path, make_context
) -> None:
    path = tmp_path / "out.parquet"
    path.write_bytes(b"a previous run's output")
    with pytest.raises(ValueError, match=r"set kind .*the previous .*out\.parquet was removed"):
        await write_all(FileSink("f", FileSinkParams(path=str(path))), make_context(), [])
    assert not path.exists()
    await write_all(
        FileSink("f", FileSinkParams(path=str(path), kind="quotes")), make_context(), []
    )
    assert pq.read_table(path).schema.equals(records.QUOTES, check_metadata=False)


@pytest.mark.asyncio
async def test_explicit_format_overrides_the_extension(tmp_path: Path, make_context) -> None:
    path = tmp_path / "trades.dat"
    await write_all(
        FileSink("f", FileSinkParams(path=str(path), format="ndjson")), make_context(), synthetic()
    )
    assert len(path.read_text().splitlines()) == 2500


def test_an_unknown_extension_fails_validation_naming_the_node() -> None:
    graph = Graph.build(
        [node("gen", "synthetic"), node("file", "file", path="out.xlsx")], ["gen -> file"]
    )
    with pytest.raises(GraphError, match="cannot tell the format") as info:
        graph.validated()
    assert info.value.node_id == "file"


def test_runs_in_a_graph(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    graph = Graph.build(
        [node("gen", "synthetic", kind="quotes", count=100), node("file", "file", path=str(path))],
        ["gen -> file"],
    )
    result = asyncio.run(GraphRuntime(graph).run())
    assert result.nodes["file"].counters["written"] == 100
    assert pq.read_metadata(path).num_rows == 100

import pytest

from market_data_core.testing import make_quote, make_trade
from market_data_pipeline import records
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.sinks.stdout import NullSink, StdoutSink, StdoutSinkParams


@pytest.mark.asyncio
async def test_table_format_shows_at_most_max_rows(
    capsys: pytest.CaptureFixture[str], make_context
) -> None:
    sink = StdoutSink("show", StdoutSinkParams(max_rows=2))
    await sink.open(make_context("show"))
    await sink.write(records.from_models([make_trade(price=float(p)) for p in (101, 102, 103)]))
    await sink.close()
    out = capsys.readouterr().out
    assert "show: 3 trades" in out
    assert "101.0" in out
    assert "102.0" in out
    assert "103.0" not in out
    assert "1 more rows" in out


@pytest.mark.asyncio
async def test_ndjson_format(capsys: pytest.CaptureFixture[str], make_context) -> None:
    sink = StdoutSink("show", StdoutSinkParams(format="ndjson", max_rows=None))
    await sink.open(make_context("show"))
    await sink.write(records.from_models([make_quote(), make_quote(bid=1.0)]))
    await sink.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert '"ts":"2024-01-02T14:30:00.000000Z"' in lines[0]
    assert '"bid":1.0' in lines[1]


@pytest.mark.asyncio
async def test_null_sink_counts_and_discards() -> None:
    graph = Graph.build(
        [node("gen", "synthetic", count=2500, batch_size=1000), node("void", "null")],
        ["gen -> void"],
    )
    runtime = GraphRuntime(graph)
    result = await runtime.run()
    sink = runtime.components["void"]
    assert isinstance(sink, NullSink)
    assert (sink.rows, sink.batches) == (2500, 3)
    assert result.written == 2500

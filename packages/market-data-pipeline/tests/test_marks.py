"""Marks: a source is acknowledged only once what it fed was committed by every sink."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.testing import make_trade
from market_data_core.testing.servers import scaled
from market_data_core.timestamps import to_ns
from market_data_pipeline import records
from market_data_pipeline.components import Emit, NoParams, Provider, SinkComponent
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.marks import Mark
from market_data_pipeline.registry import Registry
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import registry_with_fakes

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


class Entries(Provider[NoParams]):
    """Emits the test's tables, each followed by a mark (like a stream's entries)."""

    tables: ClassVar[list[pa.Table]] = []
    marks: ClassVar[list[Mark]] = []

    async def run(self, emit: Emit) -> None:
        for i, table in enumerate(self.tables):
            await emit(table)
            mark = Mark(i, self.context.paths)
            self.marks.append(mark)
            await emit.mark(mark)


class Log(SinkComponent[NoParams]):
    """Keeps the rows it was given and, at each commit, what it held then."""

    rows: ClassVar[dict[str, list[pa.Table]]] = {}
    commits: ClassVar[dict[str, list[int]]] = {}

    async def open(self, ctx) -> None:
        await super().open(ctx)
        self.rows[self.node_id] = []
        self.commits[self.node_id] = []

    async def write(self, batch: pa.Table) -> None:
        await asyncio.sleep(0)
        self.rows[self.node_id].append(batch)

    async def commit(self) -> None:
        await asyncio.sleep(0)
        self.commits[self.node_id].append(sum(t.num_rows for t in self.rows[self.node_id]))


def registry() -> Registry:
    reg = registry_with_fakes()
    reg.register("entries", Entries)
    reg.register("log", Log)
    return reg


def trades(*seconds: float, symbol: str = "AAPL") -> pa.Table:
    return records.from_models(
        [
            make_trade(symbol=symbol, ts=T0 + timedelta(seconds=s), price=100 + s, trade_id=str(s))
            for s in seconds
        ]
    )


async def run(graph: Graph, *tables: pa.Table) -> GraphRuntime:
    Entries.tables = list(tables)
    Entries.marks = []
    runtime = GraphRuntime(graph, registry=registry())
    await asyncio.wait_for(runtime.run(), timeout=scaled(30))
    return runtime


@pytest.mark.asyncio
async def test_a_resampler_holds_a_mark_until_the_windows_before_it_are_purged() -> None:
    graph = Graph.build(
        [node("src", "entries"), node("bars", "resample_ohlc", timeframe="1m"), node("out", "log")],
        ["src -> bars", "bars -> out"],
    )
    # entry 0: minute 0; entry 1: minutes 0 and 1 (61 s closes minute 0); entry 2: minute 2
    # (closes minute 1); entry 3: minute 2
    await run(graph, trades(1, 2), trades(30, 61), trades(125), trades(130))
    done = [m.complete for m in Entries.marks]
    # minute 2 is still open at the end: entries 2 and 3 are not acknowledged, although
    # the end of input emitted its (possibly partial) bar
    assert done == [True, True, False, False]
    assert len(Log.rows["out"]) == 3  # minute 0, minute 1, and minute 2 at the end
    # mark 0 went out behind minute 0's bar, mark 1 behind minute 1's
    assert Log.commits["out"] == [1, 2]
    # stamped with the latest event time, in nanoseconds
    assert Entries.marks[0].stamps["bars"] == to_ns(T0 + timedelta(seconds=61))
    assert Entries.marks[1].stamps["bars"] == to_ns(T0 + timedelta(seconds=125))


@pytest.mark.asyncio
async def test_allowed_lateness_keeps_marks_until_a_revision_is_impossible() -> None:
    graph = Graph.build(
        [
            node("src", "entries"),
            node("bars", "resample_ohlc", timeframe="1m", allowed_lateness=60),
            node("out", "log"),
        ],
        ["src -> bars", "bars -> out"],
    )
    await run(graph, trades(1), trades(70), trades(125), trades(190))
    # minute 0 fires at 60 s but can be revised until 120 s; minute 1 until 180 s
    assert [m.complete for m in Entries.marks] == [True, True, False, False]
    assert Log.commits["out"] == [2, 3]  # minute 0 purged at 125 s (2 bars out), minute 1 at 190 s


@pytest.mark.asyncio
async def test_a_mark_completes_only_once_every_path_committed() -> None:
    graph = Graph.build(
        [
            node("src", "entries"),
            node("bars", "resample_ohlc", timeframe="1m"),
            node("ticks", "log"),
            node("out", "log"),
        ],
        ["src -> ticks", "src -> bars", "bars -> out"],
    )
    await run(graph, trades(1), trades(61), trades(125))
    # the ticks sink committed every entry, but the bars path holds the last one
    assert [m.complete for m in Entries.marks] == [True, True, False]
    assert Log.commits["ticks"] == [1, 2, 3]


@pytest.mark.asyncio
async def test_a_stateless_path_passes_marks_behind_their_rows() -> None:
    graph = Graph.build(
        [
            node("src", "entries"),
            node("f", "filter", field="price", op=">", value=0),
            node("out", "log"),
        ],
        ["src -> f", "f -> out"],
    )
    await run(graph, trades(1, 2), trades(3), trades(4, 5, 6))
    assert all(m.complete for m in Entries.marks)
    assert Log.commits["out"] == [2, 3, 6]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=12),
    max_rows=st.integers(1, 40),
)
def test_a_buffer_lets_a_mark_out_only_behind_every_row_before_it(sizes, max_rows) -> None:
    graph = Graph.build(
        [
            node("src", "entries"),
            node("buf", "buffer", max_rows=max_rows, max_delay=None),
            node("out", "log"),
        ],
        ["src -> buf", "buf -> out"],
    )
    start, tables = 0, []
    for size in sizes:
        tables.append(trades(*range(start, start + size)))
        start += size
    asyncio.run(run(graph, *tables))
    assert all(m.complete for m in Entries.marks)  # the end of input empties the buffer
    entered = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    commits = Log.commits["out"]
    assert len(commits) == len(sizes)
    assert all(c >= e for c, e in zip(commits, entered, strict=True)), (commits, entered)
    written = pa.concat_tables(Log.rows["out"])
    assert written.num_rows == sum(sizes)

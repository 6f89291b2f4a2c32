import pyarrow as pa
import pytest

from market_data_core.testing import make_trade
from market_data_pipeline import records
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import TestingProvider, collect, registry_with_fakes


@pytest.mark.asyncio
async def test_fan_in_through_merge_delivers_every_row() -> None:
    TestingProvider.feed("a", [[make_trade(price=1.0)], [make_trade(price=2.0)]])
    TestingProvider.feed("b", [[make_trade(price=3.0)]])
    graph = Graph.build(
        [
            node("a", "testing_provider", name="a"),
            node("b", "testing_provider", name="b"),
            node("m", "merge"),
            node("out", "collect"),
        ],
        ["a -> m", "b -> m", "m -> out"],
    )
    result = await GraphRuntime(graph, registry=registry_with_fakes()).run()
    table = collect("out")
    assert table is not None
    assert sorted(table.column("price").to_pylist()) == [1.0, 2.0, 3.0]
    assert result.nodes["m"].items_in == 3
    assert records.kind_of(table) is records.Kind.TRADES
    assert isinstance(table, pa.Table)

import asyncio

import pytest
import redis.asyncio as aioredis

from market_data_core.testing.servers import scaled
from market_data_pipeline import records
from market_data_pipeline._arrow_ipc import decode
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.sinks.redis_stream import RedisStreamSink, RedisStreamSinkParams
from market_data_pipeline.testing import collect, registry_with_fakes

pytestmark = pytest.mark.redis


def registry():
    # "redis_stream" names both a provider and a sink: the graph resolves it by the node's role
    return registry_with_fakes()


async def stream_info(url: str, stream: str) -> tuple[int, list[tuple[bytes, dict[bytes, bytes]]]]:
    client = aioredis.Redis.from_url(url)
    try:
        return await client.xlen(stream), await client.xrange(stream)
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_one_entry_per_batch(redis_server) -> None:
    graph = Graph.build(
        [
            node("gen", "synthetic", symbols=2, count=2500, batch_size=1000),
            node("bus", "redis_stream", url=redis_server.url, stream="ticks"),
        ],
        ["gen -> bus"],
    )
    result = await asyncio.wait_for(
        GraphRuntime(graph, registry=registry()).run(), timeout=scaled(30)
    )
    assert result.nodes["bus"].counters["written"] == 2500
    length, entries = await stream_info(redis_server.url, "ticks")
    assert length == 3
    assert [fields[b"rows"] for _, fields in entries] == [b"1000", b"1000", b"500"]
    assert {fields[b"kind"] for _, fields in entries} == {b"trades"}
    assert records.kind_of(decode(entries[0][1][b"data"])) is records.Kind.TRADES


@pytest.mark.asyncio
async def test_round_trip_through_a_consumer_group(redis_server) -> None:
    source = Graph.build(
        [
            node("gen", "synthetic", kind="quotes", symbols=3, count=5000, batch_size=700, seed=3),
            node("bus", "redis_stream", url=redis_server.url, stream="q", compression="lz4"),
        ],
        ["gen -> bus"],
    )
    await asyncio.wait_for(GraphRuntime(source, registry=registry()).run(), timeout=scaled(30))
    sink_graph = Graph.build(
        [
            node(
                "bus", "redis_stream", url=redis_server.url, stream="q", group="g1", idle_stop=0.3
            ),
            node("out", "collect"),
        ],
        ["bus -> out"],
    )
    runtime = GraphRuntime(sink_graph, registry=registry_with_fakes())
    await asyncio.wait_for(runtime.run(), timeout=scaled(30))
    received = collect("out")
    expected = collect_synthetic()
    assert received is not None
    assert received.equals(expected)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        groups = await client.xinfo_groups("q")
    finally:
        await client.aclose()
    assert groups[0]["name"] == b"g1"
    assert groups[0]["pending"] == 0  # every entry acknowledged


def collect_synthetic():
    import pyarrow as pa

    from market_data_pipeline.providers.synthetic import SyntheticParams, SyntheticProvider

    params = SyntheticParams(kind="quotes", symbols=3, count=5000, batch_size=700, seed=3)
    return pa.concat_tables(list(SyntheticProvider("gen", params).tables()))


@pytest.mark.asyncio
async def test_maxlen_trims_approximately(redis_server, make_context) -> None:
    sink = RedisStreamSink(
        "bus", RedisStreamSinkParams(url=redis_server.url, stream="t", maxlen=10)
    )
    await sink.open(make_context("bus"))
    try:
        batch = collect_synthetic().slice(0, 10)
        for _ in range(500):
            await sink.write(batch)
    finally:
        await sink.close()
    length, _ = await stream_info(redis_server.url, "t")
    assert 10 <= length < 500
    assert sink.entries == 500


def test_the_url_is_secret() -> None:
    params = RedisStreamSinkParams(url="redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(params)

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from market_data_core.testing import make_quote, make_trade
from market_data_core.testing.servers import scaled
from market_data_core.timestamps import parse_timestamp, to_ns
from market_data_pipeline import records
from market_data_pipeline._arrow_ipc import decode, encode, entry
from market_data_pipeline.exceptions import NodeError, RecordError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.job import UnifiedRuntime
from market_data_pipeline.providers.redis_stream import RedisStreamParams, RedisStreamProvider
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.settings import UnifiedRuntimeSettings
from market_data_pipeline.testing import TestingProvider, collect, registry_with_fakes

pytestmark = pytest.mark.redis


def trades(n: int, price: float = 100.0) -> pa.Table:
    return records.from_models([make_trade(price=price + i, trade_id=str(i)) for i in range(n)])


def test_arrow_ipc_round_trip_keeps_schema_and_values() -> None:
    table = trades(3)
    assert decode(encode(table)).equals(table)
    assert decode(encode(table, compression="zstd")).equals(table)
    # every column of the contract: nanosecond times, receive time, ordinal, version
    at = parse_timestamp("2024-01-02T14:30:00.123456789Z")
    full = records.from_models(
        [
            make_trade(
                ts=at,
                received_at=parse_timestamp("2024-01-02T14:30:00.123457001Z"),
                ordinal=3,
                as_of=at,
                revision=2,
                reason="correction",
                exchange="XNAS",
                conditions=("A",),
            )
        ]
    )
    assert decode(encode(full, compression="lz4")).equals(full)
    assert records.to_models(decode(encode(full))) == records.to_models(full)
    fields = entry(records.from_models([make_quote()]))
    assert fields[b"kind"] == b"quotes"
    assert fields[b"rows"] == b"1"


async def add(url: str, stream: str, *tables: pa.Table) -> list[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        return [await client.xadd(stream, entry(t)) for t in tables]
    finally:
        await client.aclose()


async def pending(url: str, stream: str, group: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.xpending(stream, group)
        return int(info["pending"])
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_reads_every_entry_through_a_group_and_acks_it(redis_server) -> None:
    await add(redis_server.url, "ticks", trades(3), trades(2, 200.0))
    graph = Graph.build(
        [
            node("src", "redis_stream", url=redis_server.url, stream="ticks", idle_stop=0.2),
            node("out", "collect"),
        ],
        ["src -> out"],
    )
    runtime = GraphRuntime(graph, registry=registry_with_fakes())
    result = await asyncio.wait_for(runtime.run(), timeout=scaled(30))
    table = collect("out")
    assert table is not None
    assert table.column("price").to_pylist() == [100.0, 101.0, 102.0, 200.0, 201.0]
    assert result.nodes["src"].batches_out == 2
    provider = runtime.components["src"]
    assert isinstance(provider, RedisStreamProvider)
    assert provider.acked == 2
    assert await pending(redis_server.url, "ticks", "md-pipeline") == 0


@pytest.mark.asyncio
async def test_unacknowledged_entries_are_delivered_again_to_the_same_consumer(
    redis_server, make_context, collector
) -> None:
    await add(redis_server.url, "ticks", trades(1), trades(1, 200.0))
    params = RedisStreamParams(url=redis_server.url, stream="ticks", consumer="w1", idle_stop=0.2)
    first = RedisStreamProvider("src", params)
    await first.open(make_context("src"))
    try:
        async with contextlib.aclosing(first.batches()) as batches:
            async for _batch in batches:
                break  # a crash after reading both entries, before the first went downstream
    finally:
        await first.close()
    assert await pending(redis_server.url, "ticks", "md-pipeline") == 2

    again = RedisStreamProvider("src", params)
    await again.open(make_context("src"))
    try:
        await again.run(collector)
    finally:
        await again.close()
    assert collector.table().column("price").to_pylist() == [100.0, 200.0]
    assert await pending(redis_server.url, "ticks", "md-pipeline") == 0


@pytest.mark.asyncio
async def test_workers_of_one_group_share_the_entries(redis_server, make_context) -> None:
    await add(redis_server.url, "ticks", *[trades(1, float(i)) for i in range(10)])
    seen: list[float] = []

    async def worker(name: str) -> None:
        params = RedisStreamParams(
            url=redis_server.url,
            stream="ticks",
            consumer=name,
            count=1,
            idle_stop=0.3,
            claim_idle=None,  # both are alive: neither takes the other's entries
        )
        provider = RedisStreamProvider(name, params)
        await provider.open(make_context(name))
        try:
            async with contextlib.aclosing(provider.batches()) as batches:
                async for batch in batches:
                    seen.extend(batch.column("price").to_pylist())
                    await asyncio.sleep(0)
        finally:
            await provider.close()

    await asyncio.wait_for(asyncio.gather(worker("a"), worker("b")), timeout=scaled(30))
    assert sorted(seen) == [float(i) for i in range(10)]


@pytest.mark.asyncio
async def test_a_corrupt_entry_fails_the_job_naming_the_entry(redis_server) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        entry_id = await client.xadd("ticks", {b"kind": b"trades", b"data": b"not arrow"})
    finally:
        await client.aclose()
    graph = Graph.build(
        [
            node("src", "redis_stream", url=redis_server.url, stream="ticks", idle_stop=0.2),
            node("out", "null"),
        ],
        ["src -> out"],
    )
    with pytest.raises(NodeError) as info:
        await asyncio.wait_for(GraphRuntime(graph).run(), timeout=scaled(30))
    assert info.value.node_id == "src"
    assert isinstance(info.value.error, RecordError)
    assert f"entry {entry_id.decode()}" in str(info.value)


@pytest.mark.asyncio
async def test_stops_when_the_job_stops(redis_server, make_context, collector) -> None:
    provider = RedisStreamProvider(
        "src", RedisStreamParams(url=redis_server.url, stream="quiet", block_ms=50)
    )
    ctx = make_context("src")
    await provider.open(ctx)
    try:
        task = asyncio.create_task(provider.run(collector))
        await asyncio.sleep(0.1)
        assert not task.done()
        ctx.stopping.set()
        await asyncio.wait_for(task, timeout=scaled(10))
    finally:
        await provider.close()
    assert collector.rows == 0


def test_the_url_is_secret() -> None:
    params = RedisStreamParams(url="redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in repr(params)
    assert "hunter2" not in str(params.model_dump())


def minute_trades(*seconds: float) -> pa.Table:
    t0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    return records.from_models(
        [
            make_trade(ts=t0 + timedelta(seconds=s), price=100.0 + s, trade_id=str(s))
            for s in seconds
        ]
    )


def bars_graph(url: str, consumer: str = "w1", **params: object) -> Graph:
    return Graph.build(
        [
            node(
                "src",
                "redis_stream",
                url=url,
                stream="ticks",
                consumer=consumer,
                idle_stop=0.3,
                **params,
            ),
            node("bars", "resample_ohlc", timeframe="1m"),
            node("out", "collect"),
            node("late", "collect"),
        ],
        ["src -> bars", "bars -> out", "bars.late -> late"],
    )


@pytest.mark.asyncio
async def test_an_entry_is_acknowledged_only_once_its_windows_were_committed(redis_server) -> None:
    url = redis_server.url
    await add(url, "ticks", minute_trades(1), minute_trades(61), minute_trades(125))
    await asyncio.wait_for(
        GraphRuntime(bars_graph(url), registry=registry_with_fakes()).run(), scaled(30)
    )
    # minute 2 is still open when the stream goes idle: its entry stays pending, though the
    # end of the run emitted its bar
    assert await pending(url, "ticks", "md-pipeline") == 1
    client = aioredis.Redis.from_url(url)
    try:
        stamps = await client.hgetall("ticks:md-pipeline:stamps:ns")
    finally:
        await client.aclose()
    t125 = datetime(2026, 3, 2, 14, 32, 5, tzinfo=UTC)
    assert stamps == {b"bars": str(to_ns(t125)).encode()}  # nanoseconds

    # a restart delivers the held entry again and resumes at the saved event time: a tick
    # of minute 0 (committed before the restart) is late, not a partial minute-0 bar
    await add(url, "ticks", minute_trades(10))
    runtime = GraphRuntime(bars_graph(url), registry=registry_with_fakes())
    result = await asyncio.wait_for(runtime.run(), scaled(30))
    bars = collect("out")
    assert bars is not None
    assert [s.minute for s in bars.column("start").to_pylist()] == [32]
    assert result.nodes["bars"].counters["late"] == 1
    late = collect("late")
    assert late is not None
    assert late.column("price").to_pylist() == [110.0]


@pytest.mark.asyncio
async def test_stamps_an_earlier_version_saved_in_microseconds_are_read_as_nanoseconds(
    redis_server, make_context
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.xgroup_create("old", "md-pipeline", id="0", mkstream=True)
        await client.hset("old:md-pipeline:stamps", mapping={"bars": 1704205800123456})
    finally:
        await client.aclose()
    provider = RedisStreamProvider("src", RedisStreamParams(url=redis_server.url, stream="old"))
    await provider.open(make_context("src"))
    try:
        assert provider.restored == {"bars": 1704205800123456000}
    finally:
        await provider.close()


@pytest.mark.asyncio
async def test_a_new_consumer_claims_what_a_dead_one_left_pending(
    redis_server, make_context
) -> None:
    url = redis_server.url
    await add(url, "ticks", minute_trades(1), minute_trades(2))
    dead = RedisStreamProvider("src", RedisStreamParams(url=url, stream="ticks", consumer="dead"))
    await dead.open(make_context("src"))
    try:
        async with contextlib.aclosing(dead.batches()) as batches:
            async for _batch in batches:
                break  # read both entries, then died
    finally:
        await dead.close()
    assert await pending(url, "ticks", "md-pipeline") == 2

    graph = Graph.build(
        [
            node(
                "src",
                "redis_stream",
                url=url,
                stream="ticks",
                consumer="new",
                idle_stop=0.3,
                claim_idle=0.2,
            ),
            node("out", "collect"),
        ],
        ["src -> out"],
    )
    runtime = GraphRuntime(graph, registry=registry_with_fakes())
    result = await asyncio.wait_for(runtime.run(), scaled(30))
    table = collect("out")
    assert table is not None
    assert table.column("price").to_pylist() == [101.0, 102.0]
    assert result.nodes["src"].counters["claimed"] == 2
    assert await pending(url, "ticks", "md-pipeline") == 0


@pytest.mark.asyncio
async def test_nodes_without_a_url_use_mdp_redis_url(redis_server, tmp_path) -> None:
    """A config that names no Redis (so holds no password: a Kubernetes ConfigMap) reads and
    writes the server of MDP_REDIS_URL; a node's own url still wins over it."""
    TestingProvider.feed(
        "to_redis", [[make_trade(price=float(i), trade_id=str(i))] for i in range(3)]
    )
    settings = UnifiedRuntimeSettings(redis_url=SecretStr(redis_server.url), state_dir=tmp_path)
    feed = Graph.build(
        [node("src", "testing_provider", name="to_redis"), node("out", "redis_stream", stream="s")],
        ["src -> out"],
    )
    read = Graph.build(
        [node("src", "redis_stream", stream="s", idle_stop=0.3), node("out", "collect")],
        ["src -> out"],
    )
    async with UnifiedRuntime(settings, registry=registry_with_fakes()) as runtime:
        await asyncio.wait_for(runtime.run(feed), timeout=scaled(30))
        await asyncio.wait_for(runtime.run(read), timeout=scaled(30))
    table = collect("out")
    assert table is not None
    assert table.column("price").to_pylist() == [0.0, 1.0, 2.0]
    assert await pending(redis_server.url, "s", "md-pipeline") == 0
    elsewhere = Graph.build(  # its own url: nothing listens there
        [
            node(
                "src",
                "redis_stream",
                url="redis://:hunter2@127.0.0.1:1/0",
                stream="s",
                reconnect_timeout=0.3,
            ),
            node("out", "collect"),
        ],
        ["src -> out"],
    )
    async with UnifiedRuntime(settings, registry=registry_with_fakes()) as runtime:
        # it retries for reconnect_timeout, then names the server (not its password)
        with pytest.raises(
            NodeError,
            match=r"Redis at redis://127\.0\.0\.1:1/0 unreachable .*connecting to 127\.0\.0\.1:1\b",
        ) as info:
            await asyncio.wait_for(runtime.run(elsewhere), timeout=scaled(30))
        assert "hunter2" not in str(info.value)


@pytest.mark.asyncio
async def test_entries_acknowledged_while_a_pending_read_was_answered_are_not_emitted_again(
    redis_server, make_context, collector
) -> None:
    """After an outage the worker re-reads its pending entries (``XREADGROUP`` at 0) while
    its acker acknowledges, on another connection, entries it already emitted. Redis may
    answer the read first (the entries are still pending) and the acker's reply be taken
    first (they leave ``_inflight``): the held entries must not be emitted a second time
    (a loaded machine: 200 ticks twice after a Redis crash)."""
    url = redis_server.url
    first = await add(url, "ticks", minute_trades(1), minute_trades(2))
    ctx = make_context("src")
    ctx.paths = 1  # marks complete when the test says (the open minute's entries held)
    params = RedisStreamParams(url=url, stream="ticks", consumer="w1", block_ms=50, claim_idle=None)
    provider = RedisStreamProvider("src", params)
    await provider.open(ctx)
    assert provider.link is not None
    link = provider.link
    client: Any = link.client
    read = client.xreadgroup
    raced = asyncio.Event()

    async def xreadgroup(group: str, consumer: str, streams: dict[str, str], **kw: Any) -> Any:
        reply = await read(group, consumer, streams, **kw)
        if streams["ticks"] == "0" and link.outages and not raced.is_set():
            raced.set()  # the held entries were pending when Redis answered; now the
            for mark in collector.marks:  # acker's XACK reply is taken before this one
                mark.arrive()
            async with asyncio.timeout(10):
                while provider.acked < len(first):  # noqa: ASYNC110 - the acker's task
                    await asyncio.sleep(0.01)
        return reply

    client.xreadgroup = xreadgroup
    running = asyncio.create_task(provider.run(collector))
    try:
        async with asyncio.timeout(10):
            while len(collector.marks) < len(first):  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
        admin = aioredis.Redis.from_url(url)
        try:  # an outage: every connection of the worker drops
            await admin.client_kill_filter(_type="normal", skipme=True)
        finally:
            await admin.aclose()
        async with asyncio.timeout(10):
            await raced.wait()
        await add(url, "ticks", minute_trades(3))
        await collector.wait_rows(3)
        await asyncio.sleep(0.3)  # time for a wrong re-delivery to show
        ctx.stopping.set()
        await asyncio.wait_for(running, scaled(10))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await provider.close()
    assert collector.table().column("price").to_pylist() == [101.0, 102.0, 103.0]

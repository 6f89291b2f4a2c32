"""Benchmarks of market-data-core: validation, JSON, the wire format and both transports.

Run with ``uv run nox -s bench`` (not part of the default sessions). Every row measures a
rate (items/s) and the rate of a baseline measured in the same run, and prints their ratio
(``rate / baseline rate``); nothing here passes or fails on timing. Each figure is the best
(fastest) of a few repetitions, subject and baseline alternating.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from _report import Row, print_table

from market_data_core import (
    BackpressureLevel,
    Bar,
    FeedbackEvent,
    InMemoryFeedbackBus,
    Timeframe,
    Trade,
)
from market_data_core.testing import T0
from market_data_core.testing.servers import RedisServer
from market_data_core.transports import wire
from market_data_core.transports.redis import RedisFeedbackPublisher, RedisFeedbackSubscriber

REPEAT = 5
REDIS_REPEAT = 3
N_TRADES = 50_000
N_BARS = 20_000
N_WIRE = 20_000
N_BUS = 100_000
N_REDIS = 20_000
FANOUT = 4
YIELD_EVERY = 256  # the publisher yields to the draining tasks every this many messages
REDIS_TIMEOUT = 60.0
PUBLISHER = "bench-publisher"


Measure = Callable[[], float]  # runs once, returns the seconds of the timed part


def best_times(repeat: int, *measures: Measure) -> list[float]:
    """The best (lowest) seconds of each measure over ``repeat`` rounds; within a round the
    measures run one after the other, so a slow spell of the machine hits them all."""
    times: list[list[float]] = [[] for _ in measures]
    for _ in range(repeat):
        for measure, samples in zip(measures, times, strict=True):
            gc.collect()
            samples.append(measure())
    return [min(samples) for samples in times]


def timed(work: Callable[[], object]) -> Measure:
    def measure() -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    return measure


# --- data -----------------------------------------------------------------------------


def trade_dicts(n: int) -> list[dict[str, Any]]:
    return [
        {
            "symbol": "AAPL",
            "ts": T0 + timedelta(milliseconds=i),
            "price": 185.0 + (i % 100) / 100,
            "size": float(1 + i % 50) * 10,
            "exchange": "XNAS",
            "trade_id": str(i),
            "side": "buy" if i % 2 else "sell",
        }
        for i in range(n)
    ]


def bars(n: int) -> list[Bar]:
    minute = Timeframe.parse("1m")
    return [
        Bar(
            source="bench",
            symbol="AAPL",
            timeframe=minute,
            start=T0 + i * minute.delta,
            open=185.0,
            high=185.9,
            low=184.8,
            close=185.5,
            volume=12_000.0 + i,
            trade_count=87,
            vwap=185.31,
        )
        for i in range(n)
    ]


def feedback_events(n: int, capacity: int = 1000) -> list[FeedbackEvent]:
    """Events of one coordinator with increasing ``seq`` (none is stale)."""
    events = []
    for seq in range(1, n + 1):
        size = seq % capacity
        level = (
            BackpressureLevel.OK
            if size < 0.7 * capacity
            else BackpressureLevel.SOFT
            if size < 0.9 * capacity
            else BackpressureLevel.HARD
        )
        events.append(
            FeedbackEvent(
                coordinator_id="store-1",
                queue_size=size,
                capacity=capacity,
                level=level,
                utilization=size / capacity,
                ts=T0 + timedelta(milliseconds=seq),
                seq=seq,
            )
        )
    return events


# --- CPU-bound rows --------------------------------------------------------------------


def bench_trades() -> list[Row]:
    dicts = trade_dicts(N_TRADES)
    fields = tuple(dicts[0])

    def validate() -> None:
        for data in dicts:
            Trade.model_validate(data)

    def construct() -> None:
        for data in dicts:
            Trade.model_construct(**data)

    def plain_tuple() -> None:
        for data in dicts:
            tuple(data[name] for name in fields)

    seconds, constructed, tupled = best_times(
        REPEAT, timed(validate), timed(construct), timed(plain_tuple)
    )
    subject = "Trade.model_validate(dict)"
    return [
        Row(
            "trade validation",
            N_TRADES,
            seconds,
            "model_construct",
            constructed,
            subject,
            "Trade.model_construct(**dict)",
            "model_construct skips every check but runs in Python, validation runs in "
            "pydantic-core, so above 1 means checking is cheaper than unchecked construction",
        ),
        Row(
            "trade validation",
            N_TRADES,
            seconds,
            "plain tuple",
            tupled,
            subject,
            "building a tuple of the dict's values",
            "the tuple is the floor of any per-trade record: this is the full price of a "
            "validated, frozen model",
        ),
    ]


def bench_bars() -> Row:
    models = bars(N_BARS)
    dicts = [bar.model_dump(mode="json") for bar in models]

    def round_trip() -> None:
        for bar in models:
            Bar.model_validate_json(bar.model_dump_json())

    def plain_json() -> None:
        for data in dicts:
            json.loads(json.dumps(data))

    seconds, baseline = best_times(REPEAT, timed(round_trip), timed(plain_json))
    return Row(
        "bar JSON round-trip",
        N_BARS,
        seconds,
        "json dumps+loads",
        baseline,
        "Bar.model_validate_json(bar.model_dump_json())",
        "json.loads(json.dumps(dict)) of the same data",
        "the model side also checks types, the UTC timestamp, OHLC consistency and "
        "timeframe alignment, and rebuilds a model",
    )


def bench_wire() -> Row:
    events = feedback_events(N_WIRE)
    dicts = [event.model_dump(mode="json") for event in events]

    def encode_decode() -> None:
        for event in events:
            wire.decode(wire.encode(event, publisher=PUBLISHER))

    def plain_json() -> None:
        for data in dicts:
            json.loads(json.dumps(data))

    seconds, baseline = best_times(REPEAT, timed(encode_decode), timed(plain_json))
    return Row(
        "wire encode+decode",
        N_WIRE,
        seconds,
        "json dumps+loads",
        baseline,
        "wire.decode(wire.encode(event))",
        "json.loads(json.dumps(dict)) of the event's data",
        "the wire side adds the four-field envelope, the contract-version check and "
        "FeedbackEvent validation",
    )


# --- in-memory bus ---------------------------------------------------------------------


def chunks(items: Sequence[FeedbackEvent], size: int) -> Iterable[Sequence[FeedbackEvent]]:
    return (items[i : i + size] for i in range(0, len(items), size))


async def count_messages(source: AsyncIterator[object]) -> int:
    count = 0
    async for _ in source:
        count += 1
    return count


async def count_until_none(queue: asyncio.Queue[FeedbackEvent | None]) -> int:
    count = 0
    while await queue.get() is not None:
        count += 1
    return count


def check_counts(what: str, counts: Sequence[int], expected: int) -> None:
    if any(count != expected for count in counts):
        msg = f"{what}: subscribers received {counts}, expected {expected} each"
        raise RuntimeError(msg)


async def publish_to_bus(events: Sequence[FeedbackEvent]) -> float:
    bus = InMemoryFeedbackBus(queue_size=4 * YIELD_EVERY)
    drainers = [
        asyncio.create_task(count_messages(aiter(bus.subscribe(name=f"sub-{i}"))))
        for i in range(FANOUT)
    ]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for chunk in chunks(events, YIELD_EVERY):
        for event in chunk:
            await bus.publish(event)
        await asyncio.sleep(0)
    await bus.aclose()
    counts = await asyncio.gather(*drainers)
    elapsed = time.perf_counter() - start
    check_counts("in-memory bus", counts, len(events))
    return elapsed


async def put_to_queues(events: Sequence[FeedbackEvent]) -> float:
    queues: list[asyncio.Queue[FeedbackEvent | None]] = [
        asyncio.Queue(4 * YIELD_EVERY) for _ in range(FANOUT)
    ]
    drainers = [asyncio.create_task(count_until_none(queue)) for queue in queues]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for chunk in chunks(events, YIELD_EVERY):
        for event in chunk:
            for queue in queues:
                queue.put_nowait(event)
        await asyncio.sleep(0)
    for queue in queues:
        await queue.put(None)
    counts = await asyncio.gather(*drainers)
    elapsed = time.perf_counter() - start
    check_counts("plain queues", counts, len(events))
    return elapsed


def bench_bus(events: Sequence[FeedbackEvent]) -> Row:
    seconds, baseline = best_times(
        REPEAT,
        lambda: asyncio.run(publish_to_bus(events)),
        lambda: asyncio.run(put_to_queues(events)),
    )
    return Row(
        f"in-memory bus x{FANOUT}",
        len(events),
        seconds,
        f"{FANOUT} asyncio.Queues",
        baseline,
        f"publishing to InMemoryFeedbackBus with {FANOUT} subscriptions drained by tasks",
        f"put_nowait into {FANOUT} plain asyncio.Queues drained the same way",
        "the bus adds the per-message stale check (FeedbackTracker) and bounded "
        "drop-oldest subscriptions; rate = messages published, each delivered 4 times",
    )


# --- Redis transport -------------------------------------------------------------------


async def receive(subscriber: RedisFeedbackSubscriber, expected: int) -> int:
    count = 0
    async for _ in subscriber:
        count += 1
        if count == expected:
            break
    return count


async def redis_transport(url: str, stream: str, events: Sequence[FeedbackEvent]) -> float:
    subscriber = RedisFeedbackSubscriber.from_url(
        url, stream=stream, queue_size=len(events), block_ms=200
    )
    publisher = RedisFeedbackPublisher.from_url(
        url, stream=stream, maxlen=len(events), heartbeat_interval=None, publisher_id=PUBLISHER
    )
    async with subscriber, publisher:
        receiving = asyncio.create_task(receive(subscriber, len(events)))
        start = time.perf_counter()
        for event in events:
            await publisher.publish(event)
        received = await asyncio.wait_for(receiving, REDIS_TIMEOUT)
        elapsed = time.perf_counter() - start
    if publisher.failures or subscriber.decode_errors or subscriber.dropped_overflow:
        msg = f"redis transport: {publisher.health()} / {subscriber.health()}"
        raise RuntimeError(msg)
    check_counts("redis transport", [received], len(events))
    return elapsed


async def redis_raw_xadd(url: str, stream: str, fields: Sequence[dict[Any, Any]]) -> float:
    client = aioredis.Redis.from_url(url)
    try:
        start = time.perf_counter()
        for entry in fields:
            await client.xadd(stream, entry, maxlen=len(fields), approximate=True)
        return time.perf_counter() - start
    finally:
        await client.aclose()


def bench_redis(events: Sequence[FeedbackEvent]) -> Row:
    fields = [wire.encode(event, publisher=PUBLISHER) for event in events]
    runs = iter(range(2 * REDIS_REPEAT))  # a fresh stream for every run
    with RedisServer() as server:
        seconds, baseline = best_times(
            REDIS_REPEAT,
            lambda: asyncio.run(redis_transport(server.url, f"bench:{next(runs)}", events)),
            lambda: asyncio.run(redis_raw_xadd(server.url, f"bench:{next(runs)}", fields)),
        )
    return Row(
        "redis transport e2e",
        len(events),
        seconds,
        "raw xadd",
        baseline,
        "publish -> redis-server -> subscriber until all are received",
        "bare redis-py XADDs of the pre-encoded fields",
        "the transport adds encoding, the subscriber's XREAD loop in the same process, "
        "decoding, validation and the stale check; the baseline reads nothing",
    )


# --- report ----------------------------------------------------------------------------


def main() -> None:
    started = time.perf_counter()
    print(  # noqa: T201
        f"market-data-core benchmarks, Python {sys.version.split()[0]}: best of {REPEAT} runs "
        f"(redis: {REDIS_REPEAT}); ratio = rate / baseline rate, both measured in this run\n",
        flush=True,
    )
    events = feedback_events(N_BUS)
    rows = [
        *bench_trades(),
        bench_bars(),
        bench_wire(),
        bench_bus(events),
        bench_redis(events[:N_REDIS]),
    ]
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")  # noqa: T201


if __name__ == "__main__":
    main()

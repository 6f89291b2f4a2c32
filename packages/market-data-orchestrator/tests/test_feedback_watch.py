"""The feedback watcher on a real redis-server, on a real store service's server-sent events
(``mds serve``) and on the in-memory bus; the reason it gives when no level can be heard."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from market_data_core import BackpressureLevel, HealthState, InMemoryFeedbackBus
from market_data_core.testing import T0, make_feedback_event, make_rate_adjustment
from market_data_core.testing.servers import RedisServer, free_port, scaled
from market_data_core.transports.redis import RedisFeedbackPublisher
from market_data_orchestrator.watchers.feedback import FeedbackWatcher, Message
from market_data_store.testing import StoreService

STREAM = "test:feedback"


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition that another task or process makes true (generous bound)."""
    async with asyncio.timeout(scaled(30)):
        # the subscriber's ``connected`` flag has no event to wait on: poll it
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.redis
@pytest.mark.asyncio
async def test_latest_per_coordinator_and_provider_and_stale_seq_ignored(
    redis_server: RedisServer,
) -> None:
    watcher = FeedbackWatcher.from_redis(redis_server.url, stream=STREAM, block_ms=100)
    seen: list[Message] = []
    watcher.add_listener(seen.append)
    publisher = RedisFeedbackPublisher.from_url(
        redis_server.url, stream=STREAM, heartbeat_interval=None
    )
    async with watcher, publisher:
        messages: list[Message] = [
            make_feedback_event(coordinator_id="store-1", seq=1, queue_size=10),
            make_feedback_event(
                coordinator_id="store-1",
                seq=2,
                queue_size=800,
                level=BackpressureLevel.SOFT,
                ts=T0 + timedelta(seconds=1),
            ),
            make_feedback_event(coordinator_id="store-2", seq=7, queue_size=5),
            make_rate_adjustment(provider="synthetic", scale=0.5),
            make_rate_adjustment(provider="synthetic", scale=1.0, ts=T0 + timedelta(seconds=2)),
            make_rate_adjustment(provider="replay", scale=0.0, level=BackpressureLevel.HARD),
        ]
        for message in messages:
            assert await publisher.publish(message)
        async with asyncio.timeout(30):
            await watcher.wait_for(lambda: watcher.received >= len(messages))

        snapshot = watcher.snapshot()
        assert snapshot["transport"] == "redis"
        assert snapshot["connected"] is True
        store_1 = snapshot["coordinators"]["store-1"]
        assert (store_1["seq"], store_1["queue_size"], store_1["level"]) == (2, 800, "soft")
        assert store_1["current_level"] == "soft"
        assert store_1["stale"] is False
        assert snapshot["coordinators"]["store-2"]["seq"] == 7
        assert snapshot["providers"]["synthetic"]["scale"] == 1.0
        assert snapshot["providers"]["replay"]["scale"] == 0.0
        assert snapshot["worst_level"] == "soft"
        assert seen == messages

        # a lower seq from the same publisher is stale: dropped, the latest stays
        stale = make_feedback_event(coordinator_id="store-1", seq=1, queue_size=1)
        marker = make_rate_adjustment(provider="marker", scale=1.0)
        assert await publisher.publish(stale)
        assert await publisher.publish(marker)
        async with asyncio.timeout(30):
            await watcher.wait_for(lambda: watcher.latest_rate("marker") is not None)
        latest = watcher.latest("store-1")
        assert latest is not None
        assert (latest.seq, latest.queue_size) == (2, 800)
        assert watcher.snapshot()["dropped_stale"] == 1
        assert stale not in seen
        component = watcher.component()
        assert component.state is HealthState.HEALTHY
        assert component.required is False


@pytest.mark.redis
@pytest.mark.asyncio
async def test_unreachable_redis_is_degraded_and_keeps_the_last_values(
    private_redis_server: RedisServer,
) -> None:
    watcher = FeedbackWatcher.from_redis(
        private_redis_server.url, stream=STREAM, block_ms=100, max_backoff=0.1
    )
    publisher = RedisFeedbackPublisher.from_url(
        private_redis_server.url, stream=STREAM, heartbeat_interval=None
    )
    async with watcher, publisher:
        assert await publisher.publish(make_feedback_event(coordinator_id="store-1", seq=3))
        async with asyncio.timeout(30):
            await watcher.wait_for(lambda: watcher.latest("store-1") is not None)

        await asyncio.to_thread(private_redis_server.stop)
        await until(lambda: not watcher.connected)
        component = watcher.component()
        assert component.state is HealthState.DEGRADED
        assert component.required is False
        assert component.details["last_error"]
        assert watcher.snapshot()["coordinators"]["store-1"]["seq"] == 3

        await asyncio.to_thread(private_redis_server.start)
        await until(lambda: watcher.connected)
        assert watcher.component().state is HealthState.HEALTHY


@pytest.mark.asyncio
async def test_in_memory_bus() -> None:
    bus = InMemoryFeedbackBus()
    async with FeedbackWatcher.from_bus(bus) as watcher:
        await bus.publish(make_feedback_event(coordinator_id="c1", seq=1, queue_size=3))
        await bus.publish(
            make_feedback_event(coordinator_id="c1", seq=2, level=BackpressureLevel.HARD)
        )
        await bus.publish(make_feedback_event(coordinator_id="c1", seq=1))  # stale
        await bus.publish(make_rate_adjustment(provider="p1", scale=0.25))
        async with asyncio.timeout(30):
            await watcher.wait_for(lambda: watcher.received >= 3)
        snapshot = watcher.snapshot()
        assert snapshot["transport"] == "memory"
        assert snapshot["coordinators"]["c1"]["seq"] == 2
        assert snapshot["coordinators"]["c1"]["level"] == "hard"
        assert snapshot["providers"]["p1"]["scale"] == 0.25
        assert snapshot["dropped_stale"] == 1
        assert [e.coordinator_id for e in watcher.events()] == ["c1"]
        assert watcher.component().state is HealthState.HEALTHY
    assert bus.subscriptions == ()


@pytest.mark.asyncio
async def test_silent_coordinator_reads_unknown_and_degrades() -> None:
    now = [0.0]
    bus = InMemoryFeedbackBus(ttl=5.0, clock=lambda: now[0])
    async with FeedbackWatcher.from_bus(bus) as watcher:
        await bus.publish(make_feedback_event(coordinator_id="c1", seq=1))
        async with asyncio.timeout(30):
            await watcher.wait_for(lambda: watcher.received >= 1)
        now[0] = 6.0
        snapshot = watcher.snapshot()
        assert snapshot["coordinators"]["c1"]["stale"] is True
        assert snapshot["coordinators"]["c1"]["current_level"] is None
        assert snapshot["worst_level"] is None
        component = watcher.component()
        assert component.state is HealthState.DEGRADED
        assert component.details["stale_coordinators"] == "c1"


@pytest.mark.asyncio
async def test_the_reason_names_what_is_missing_then_clears() -> None:
    now = [0.0]
    bus = InMemoryFeedbackBus(ttl=5.0, clock=lambda: now[0])
    async with FeedbackWatcher.from_bus(bus) as watcher:
        assert watcher.reason() == "connected to the in-process bus: no feedback report yet"
        await bus.publish(make_feedback_event(coordinator_id="c1", seq=1))
        async with asyncio.timeout(scaled(30)):
            await watcher.wait_for(lambda: watcher.received >= 1)
        assert watcher.reason() is None
        assert watcher.snapshot()["reason"] is None
        now[0] = 6.0
        assert watcher.reason() == "no report from c1 for over 5 s (the in-process bus)"
        assert watcher.component().details["reason"] == watcher.reason()


@pytest.mark.asyncio
async def test_a_store_nobody_serves_is_unreachable_with_the_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with FeedbackWatcher.from_store(url, max_backoff=0.2) as watcher:
        await until(lambda: watcher.reason() != f"connecting to {url}/v1/feedback/stream")
        reason = watcher.reason()
        assert reason == f"feedback from {url}/v1/feedback/stream unreachable: ConnectError"
        snapshot = watcher.snapshot()
        assert (snapshot["transport"], snapshot["connected"]) == ("sse", False)
        assert snapshot["source"] == f"{url}/v1/feedback/stream"
        assert watcher.component().state is HealthState.DEGRADED


@pytest.mark.asyncio
async def test_the_store_services_own_stream_is_followed_across_a_restart(
    tmp_path: Path,
) -> None:
    """The quickstart's transport: ``mds serve`` without Redis, followed over HTTP."""
    with StoreService(tmp_path, env={"MDS_HEARTBEAT_INTERVAL": "0.2"}) as store:
        watcher = FeedbackWatcher.from_store(store.url, max_backoff=0.2)
        async with watcher:
            async with asyncio.timeout(scaled(30)):
                await watcher.wait_for(lambda: watcher.tracker.level("store") is not None)
            assert watcher.tracker.level("store") is BackpressureLevel.OK
            assert watcher.reason() is None
            assert watcher.component().state is HealthState.HEALTHY
            assert watcher.component().details["worst_level"] == "ok"

            await asyncio.to_thread(store.kill)
            await until(lambda: not watcher.connected)
            assert (watcher.reason() or "").startswith(
                f"feedback from {store.url}/v1/feedback/stream unreachable: "
            )
            assert watcher.component().state is HealthState.DEGRADED

            heard = watcher.received
            await asyncio.to_thread(store.start)
            async with asyncio.timeout(scaled(30)):
                await watcher.wait_for(lambda: watcher.received > heard)
            assert watcher.connected
            assert watcher.reason() is None

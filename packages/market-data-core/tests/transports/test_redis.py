"""The Redis feedback transport against a real redis-server (started by a fixture, never
mocked): delivery, stale-sequence handling, publisher restarts, TTL and heartbeats, server
restarts and outages, garbage on the stream, and secrecy of the URL's password.

Every wait is bounded by ``asyncio.wait_for``; no assertion depends on how long anything
took, and the timeouts are generous because test machines are shared and noisy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from market_data_core.health import HealthComponent, HealthState, HealthStatus
from market_data_core.telemetry import BackpressureLevel, FeedbackEvent, RateAdjustment
from market_data_core.testing import T0, make_feedback_event, make_rate_adjustment
from market_data_core.testing.servers import RedisServer, free_port, scaled
from market_data_core.transports.redis import (
    DEFAULT_STREAM,
    RedisFeedbackPublisher,
    RedisFeedbackSubscriber,
)
from market_data_core.transports.wire import encode

pytestmark = pytest.mark.redis

Message = FeedbackEvent | RateAdjustment
Publishers = Callable[..., Awaitable[RedisFeedbackPublisher]]  # the make_publisher fixture
Subscribers = Callable[..., Awaitable[RedisFeedbackSubscriber]]  # the make_subscriber fixture

TIMEOUT = 30.0
"""Upper bound of any single wait; only reached when something is broken."""


async def receive(subscriber: RedisFeedbackSubscriber) -> Message:
    """The next message the subscriber yields, or ``TimeoutError``."""
    return await asyncio.wait_for(anext(aiter(subscriber)), TIMEOUT)


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, or ``TimeoutError``."""

    async def poll() -> None:
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), TIMEOUT)


async def publish(publisher: RedisFeedbackPublisher, message: Message) -> bool:
    return await asyncio.wait_for(publisher.publish(message), TIMEOUT)


# -- delivery -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_published_messages_arrive_unchanged_and_answer_queries(
    make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscriber = await make_subscriber()
    publisher = await make_publisher()
    event = make_feedback_event(level=BackpressureLevel.SOFT, queue_size=700, seq=1)
    rate = make_rate_adjustment()

    assert subscriber.level("store-1") is None  # never heard from: unknown
    assert await publish(publisher, event) is True
    assert await publish(publisher, rate) is True

    first, second = await receive(subscriber), await receive(subscriber)
    assert first == event
    assert isinstance(first, FeedbackEvent)
    assert second == rate
    assert isinstance(second, RateAdjustment)
    assert subscriber.level("store-1") is BackpressureLevel.SOFT
    assert subscriber.latest("store-1") == event
    assert subscriber.latest_rate("synthetic") == rate
    assert subscriber.latest("store-2") is None
    assert subscriber.latest_rate("other") is None
    assert subscriber.received == 2
    health = subscriber.health()
    assert health.state is HealthState.HEALTHY
    assert health.details["received"] == 2
    assert publisher.published == 2
    assert publisher.health().state is HealthState.HEALTHY


@pytest.mark.asyncio
async def test_every_subscriber_receives_every_message(
    make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscribers = [await make_subscriber(), await make_subscriber()]
    publisher = await make_publisher()
    event = make_feedback_event()

    assert await publish(publisher, event) is True

    for subscriber in subscribers:
        assert await receive(subscriber) == event


@pytest.mark.asyncio
async def test_subscriber_reads_from_the_end_unless_from_start(
    make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    publisher = await make_publisher()
    old = make_feedback_event(coordinator_id="old", seq=1)
    new = make_feedback_event(coordinator_id="new", seq=1)
    assert await publish(publisher, old) is True

    from_end = await make_subscriber()
    from_start = await make_subscriber(from_start=True)
    assert await publish(publisher, new) is True

    assert await receive(from_end) == new  # the message sent before it started is not replayed
    assert from_end.latest("old") is None
    assert [await receive(from_start), await receive(from_start)] == [old, new]


# -- ordering -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stale_sequence_number_is_dropped(
    make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscriber = await make_subscriber()
    publisher = await make_publisher()
    seq5 = make_feedback_event(seq=5, level=BackpressureLevel.HARD, queue_size=950)
    seq3 = make_feedback_event(seq=3, level=BackpressureLevel.OK, ts=T0 + timedelta(seconds=1))
    marker = make_rate_adjustment()

    assert await publish(publisher, seq5) is True
    assert await publish(publisher, seq3) is True
    assert await publish(publisher, marker) is True

    # Stream order is kept, so had seq 3 been yielded it would come before the marker.
    assert await receive(subscriber) == seq5
    assert await receive(subscriber) == marker
    assert subscriber.tracker.dropped_stale == 1
    assert subscriber.latest("store-1") == seq5
    assert subscriber.level("store-1") is BackpressureLevel.HARD
    assert subscriber.received == 2


@pytest.mark.asyncio
async def test_duplicate_is_dropped_but_heartbeat_is_accepted(
    make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscriber = await make_subscriber()
    publisher = await make_publisher()
    event = make_feedback_event(seq=5, level=BackpressureLevel.SOFT, queue_size=600)

    assert await publish(publisher, event) is True
    assert await publish(publisher, event) is True  # an exact duplicate: same seq, same ts
    assert await asyncio.wait_for(publisher.republish(), TIMEOUT) == 1  # the heartbeat

    assert await receive(subscriber) == event
    heartbeat = await receive(subscriber)
    assert isinstance(heartbeat, FeedbackEvent)
    assert heartbeat.seq == 5
    assert heartbeat.ts > event.ts
    assert heartbeat.model_dump(exclude={"ts"}) == event.model_dump(exclude={"ts"})
    assert subscriber.latest("store-1") == heartbeat
    assert subscriber.level("store-1") is BackpressureLevel.SOFT
    assert subscriber.tracker.dropped_stale == 1  # the duplicate only


@pytest.mark.asyncio
async def test_restarted_publisher_starting_again_at_seq_1_is_accepted(
    make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscriber = await make_subscriber()
    before = await make_publisher()
    assert await publish(before, make_feedback_event(seq=41, level=BackpressureLevel.HARD)) is True
    assert await receive(subscriber) == make_feedback_event(seq=41, level=BackpressureLevel.HARD)
    await before.aclose()

    after = await make_publisher()  # the coordinator restarted: a new publisher instance
    assert after.publisher_id != before.publisher_id
    restarted = make_feedback_event(seq=1, level=BackpressureLevel.OK)
    assert await publish(after, restarted) is True

    assert await receive(subscriber) == restarted
    assert subscriber.latest("store-1") == restarted
    assert subscriber.level("store-1") is BackpressureLevel.OK
    assert subscriber.tracker.dropped_stale == 0


# -- TTL and heartbeat ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_silence_past_ttl_makes_level_unknown(
    make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscriber = await make_subscriber(ttl=scaled(0.3))  # a stall past the ttl would lose the level
    publisher = await make_publisher(heartbeat_interval=None)
    event = make_feedback_event(seq=1, level=BackpressureLevel.SOFT, queue_size=600)
    assert await publish(publisher, event) is True
    assert await receive(subscriber) == event

    await eventually(lambda: subscriber.level("store-1") is None)

    assert subscriber.tracker.is_stale("store-1")
    assert subscriber.latest("store-1") == event  # remembered, but no longer trusted
    assert subscriber.tracker.worst_level() is None

    newer = make_feedback_event(seq=2, level=BackpressureLevel.OK)
    assert await publish(publisher, newer) is True
    assert await receive(subscriber) == newer
    assert subscriber.level("store-1") is BackpressureLevel.OK  # known again


@pytest.mark.asyncio
async def test_heartbeat_keeps_level_known_past_ttl(
    make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    ttl = scaled(0.3)
    subscriber = await make_subscriber(ttl=ttl)
    publisher = await make_publisher(heartbeat_interval=0.03)
    event = make_feedback_event(seq=7, level=BackpressureLevel.HARD, queue_size=990)
    assert await publish(publisher, event) is True
    assert await receive(subscriber) == event

    await asyncio.sleep(4 * ttl)  # well past the TTL, with no new state published

    heartbeat = await receive(subscriber)
    assert isinstance(heartbeat, FeedbackEvent)
    assert heartbeat.seq == 7
    assert heartbeat.ts > event.ts
    assert subscriber.level("store-1") is BackpressureLevel.HARD
    assert subscriber.tracker.dropped_stale == 0
    assert subscriber.received >= 3  # the event and heartbeats


# -- server restarts and outages ------------------------------------------------------------


@pytest.mark.asyncio
async def test_subscriber_keeps_receiving_after_server_restart(
    private_redis_server: RedisServer, make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscriber = await make_subscriber(url=private_redis_server.url, block_ms=200)
    publisher = await make_publisher(url=private_redis_server.url)
    before = make_feedback_event(seq=1, level=BackpressureLevel.OK)
    assert await publish(publisher, before) is True
    assert await receive(subscriber) == before

    private_redis_server.restart()  # same port; every connection is broken, the stream is gone

    after = make_feedback_event(seq=2, level=BackpressureLevel.HARD, queue_size=990)
    assert await publish(publisher, after) is True
    assert await receive(subscriber) == after
    assert subscriber.level("store-1") is BackpressureLevel.HARD
    await eventually(lambda: subscriber.health().state is HealthState.HEALTHY)


@pytest.mark.asyncio
async def test_subscriber_reports_outage_then_reconnects(
    private_redis_server: RedisServer, make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscriber = await make_subscriber(url=private_redis_server.url, block_ms=200, max_backoff=0.2)
    assert subscriber.health().state is HealthState.HEALTHY

    private_redis_server.stop()
    await eventually(lambda: subscriber.health().state is HealthState.UNHEALTHY)
    down = subscriber.health()
    assert down.required is False
    assert down.effective_state is HealthState.DEGRADED
    assert down.details["last_error"]

    private_redis_server.start()
    publisher = await make_publisher(url=private_redis_server.url)
    event = make_feedback_event(seq=1, level=BackpressureLevel.SOFT, queue_size=600)
    assert await publish(publisher, event) is True

    assert await receive(subscriber) == event
    assert subscriber.reconnects >= 1
    up = subscriber.health()
    assert up.state is HealthState.HEALTHY
    assert up.details["reconnects"] == subscriber.reconnects
    assert up.details["last_error"] is None


@pytest.mark.asyncio
async def test_publisher_degrades_while_redis_is_down_and_recovers(
    private_redis_server: RedisServer, make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    publisher = await make_publisher(url=private_redis_server.url)
    event = make_feedback_event(seq=3, level=BackpressureLevel.HARD, queue_size=990)
    private_redis_server.stop()

    assert await publish(publisher, event) is False  # and did not raise

    component = publisher.health()
    assert component.state is HealthState.UNHEALTHY
    assert component.required is False
    assert component.details["failures"] == 1
    assert component.details["published"] == 0
    assert component.details["last_error"]
    database = HealthComponent(name="database", state=HealthState.HEALTHY)
    service = HealthStatus.from_components("pipeline", [database, component], version="1.0")
    assert service.state is HealthState.DEGRADED  # degraded, not unhealthy
    assert service.http_status == 200

    private_redis_server.start()
    subscriber = await make_subscriber(url=private_redis_server.url)
    assert await asyncio.wait_for(publisher.republish(), TIMEOUT) == 1

    restored = await receive(subscriber)  # the state sent while Redis was down
    assert isinstance(restored, FeedbackEvent)
    assert restored.seq == 3
    assert subscriber.level("store-1") is BackpressureLevel.HARD
    assert publisher.health().state is HealthState.HEALTHY
    newer = make_feedback_event(seq=4, level=BackpressureLevel.OK)
    assert await publish(publisher, newer) is True
    assert await receive(subscriber) == newer
    assert publisher.health().details["published"] == 2


@pytest.mark.asyncio
async def test_a_frozen_redis_reads_unhealthy(
    private_redis_server: RedisServer, make_publisher: Publishers
) -> None:
    """SIGSTOP: the connection stays open and XADD never answers. A send cut short by its
    caller's timeout, or one that has waited past ``stall_after``, makes the transport
    unhealthy; once Redis answers again, it is healthy."""
    publisher = await make_publisher(url=private_redis_server.url)
    publisher.stall_after = 0.2
    assert await publish(publisher, make_feedback_event(seq=1)) is True
    private_redis_server.freeze()
    try:
        with pytest.raises(TimeoutError):  # what the store's coordinator does: a timeout
            await asyncio.wait_for(publisher.publish(make_feedback_event(seq=2)), scaled(0.5))
        assert publisher.health().state is HealthState.UNHEALTHY
        assert "no answer" in str(publisher.health().details["last_error"])

        hanging = asyncio.create_task(publisher.publish(make_feedback_event(seq=3)))
        publisher.last_error = None  # only the send in progress can tell now
        await eventually(lambda: publisher.health().state is HealthState.UNHEALTHY)
        assert publisher.health().details["last_error"] == "no answer (publish stalled)"
    finally:
        private_redis_server.thaw()
    assert await asyncio.wait_for(hanging, TIMEOUT) is True
    assert publisher.health().state is HealthState.HEALTHY


@pytest.mark.asyncio
async def test_heartbeat_survives_outage_and_restores_state(
    private_redis_server: RedisServer, make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    publisher = await make_publisher(url=private_redis_server.url, heartbeat_interval=0.05)
    private_redis_server.stop()
    event = make_feedback_event(seq=9, level=BackpressureLevel.SOFT, queue_size=600)
    assert await publish(publisher, event) is False
    await eventually(lambda: publisher.failures >= 2)  # the heartbeat failed too, and goes on

    private_redis_server.start()
    subscriber = await make_subscriber(url=private_redis_server.url)

    restored = await receive(subscriber)  # nobody called publish again: the heartbeat did
    assert isinstance(restored, FeedbackEvent)
    assert restored.seq == 9
    assert subscriber.level("store-1") is BackpressureLevel.SOFT
    await eventually(lambda: publisher.health().state is HealthState.HEALTHY)


# -- garbage on the stream ------------------------------------------------------------------

_VALID_FIELDS = encode(make_feedback_event(coordinator_id="garbage"), publisher="intruder")

GARBAGE: dict[str, dict[Any, Any]] = {
    "unknown-type": {**_VALID_FIELDS, "type": "Gossip"},
    "body-not-json": {**_VALID_FIELDS, "body": "{not json"},
    "body-invalid": {**_VALID_FIELDS, "body": '{"coordinator_id": "x", "seq": -1}'},
    "body-of-other-type": {**_VALID_FIELDS, "body": make_rate_adjustment().model_dump_json()},
    "fields-missing": {"hello": "world"},
    "other-major-contract": {**_VALID_FIELDS, "contract": "2.0.0"},
    "not-utf8": {**_VALID_FIELDS, "body": b"\xff\xfe\x00garbage"},
    "not-utf8-type": {**_VALID_FIELDS, "type": b"\xc3\x28"},
}


@pytest.mark.asyncio
@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_entry_is_skipped_and_counted(
    garbage: dict[Any, Any],
    redis_client: aioredis.Redis,
    make_publisher: Publishers,
    make_subscriber: Subscribers,
) -> None:
    subscriber = await make_subscriber()
    publisher = await make_publisher()
    await redis_client.xadd(DEFAULT_STREAM, garbage)
    valid = make_feedback_event(seq=1, level=BackpressureLevel.SOFT, queue_size=600)
    assert await publish(publisher, valid) is True

    assert await receive(subscriber) == valid
    assert subscriber.decode_errors == 1
    assert subscriber.received == 1
    assert subscriber.latest("garbage") is None
    health = subscriber.health()
    assert health.state is HealthState.HEALTHY
    assert health.details["decode_errors"] == 1


@pytest.mark.asyncio
async def test_all_garbage_is_skipped_and_later_messages_delivered(
    redis_client: aioredis.Redis, make_publisher: Publishers, make_subscriber: Subscribers
) -> None:
    subscriber = await make_subscriber()
    publisher = await make_publisher()
    first = make_feedback_event(seq=1)
    assert await publish(publisher, first) is True
    for garbage in GARBAGE.values():
        await redis_client.xadd(DEFAULT_STREAM, garbage)
    second = make_feedback_event(seq=2, level=BackpressureLevel.HARD, queue_size=990)
    assert await publish(publisher, second) is True

    assert [await receive(subscriber), await receive(subscriber)] == [first, second]
    assert subscriber.decode_errors == len(GARBAGE)


# -- secrets --------------------------------------------------------------------------------

SECRET = "hunter2-Sup3rS3cret-pw"


@pytest.mark.asyncio
@pytest.mark.parametrize("reachable", [False, True], ids=["port-closed", "credentials-rejected"])
async def test_url_password_never_appears_in_health_repr_or_logs(
    reachable: bool,
    redis_server: RedisServer,
    make_publisher: Publishers,
    make_subscriber: Subscribers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = redis_server.port if reachable else free_port()  # the server has no password
    url = f"redis://feeder:{SECRET}@127.0.0.1:{port}/0"
    publisher = await make_publisher(url)
    subscriber = await make_subscriber(url, block_ms=100, max_backoff=0.1)

    assert await publish(publisher, make_feedback_event()) is False
    assert await asyncio.wait_for(publisher.republish(), TIMEOUT) == 0

    await eventually(lambda: subscriber.last_error is not None)
    for component in (publisher.health(), subscriber.health()):
        assert component.state is HealthState.UNHEALTHY
        assert component.details["last_error"]
        for text in (component.model_dump_json(), repr(component), str(component)):
            assert SECRET not in text
    for transport in (publisher, subscriber):
        assert SECRET not in repr(transport)
        assert SECRET not in str(transport)
    assert any(r.name.startswith("market_data_core") for r in caplog.records)  # it did log
    assert SECRET not in caplog.text

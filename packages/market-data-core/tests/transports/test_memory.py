import asyncio

import pytest

from market_data_core import (
    BackpressureLevel,
    FeedbackPublisher,
    FeedbackSubscriber,
    InMemoryFeedbackBus,
)
from market_data_core.telemetry import FeedbackEvent, RateAdjustment
from market_data_core.testing import make_feedback_event, make_rate_adjustment
from market_data_core.testing.servers import scaled

pytestmark = pytest.mark.asyncio


async def _take(subscription: object, n: int) -> list[object]:
    iterator = aiter(subscription)  # type: ignore[call-overload]
    return [await asyncio.wait_for(anext(iterator), scaled(2)) for _ in range(n)]


async def test_every_subscriber_gets_every_message() -> None:
    async with InMemoryFeedbackBus() as bus:
        first, second = bus.subscribe(name="a"), bus.subscribe(name="b")
        messages = [make_feedback_event(seq=i) for i in range(1, 4)] + [make_rate_adjustment()]
        for message in messages:
            await bus.publish(message)
        assert await _take(first, 4) == messages
        assert await _take(second, 4) == messages


async def test_latest_and_level_queries() -> None:
    bus = InMemoryFeedbackBus()
    await bus.publish(make_feedback_event(seq=1, level=BackpressureLevel.SOFT))
    await bus.publish(make_feedback_event(seq=2, level=BackpressureLevel.HARD))
    await bus.publish(make_rate_adjustment(scale=0.0))
    assert bus.level("store-1") is BackpressureLevel.HARD
    latest = bus.latest("store-1")
    assert latest is not None
    assert latest.seq == 2
    rate = bus.latest_rate("synthetic")
    assert rate is not None
    assert rate.scale == 0.0


async def test_stale_events_are_not_delivered() -> None:
    async with InMemoryFeedbackBus() as bus:
        sub = bus.subscribe()
        await bus.publish(make_feedback_event(seq=5))
        await bus.publish(make_feedback_event(seq=4))
        await bus.publish(make_feedback_event(seq=6))
        assert [m.seq for m in await _take(sub, 2)] == [5, 6]  # type: ignore[attr-defined]
        assert sub.pending() == 0
        assert bus.tracker.dropped_stale == 1


async def test_slow_subscriber_loses_oldest_and_does_not_slow_others() -> None:
    async with InMemoryFeedbackBus() as bus:
        slow = bus.subscribe(name="slow", queue_size=3)  # never read until the end
        fast_seen: list[int] = []
        bus.add_handler(lambda m: fast_seen.append(m.seq), name="fast")  # type: ignore[union-attr]
        for seq in range(1, 11):
            await bus.publish(make_feedback_event(seq=seq))
        await asyncio.sleep(0.01)
        assert fast_seen == list(range(1, 11))
        assert slow.dropped == 7
        assert [m.seq for m in await _take(slow, 3)] == [8, 9, 10]  # type: ignore[attr-defined]


async def test_failing_handler_is_isolated_and_keeps_receiving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good: list[int] = []
    calls: list[int] = []

    async def flaky(message: FeedbackEvent | RateAdjustment) -> None:
        assert isinstance(message, FeedbackEvent)
        calls.append(message.seq)
        if message.seq % 2:
            raise RuntimeError("boom")

    bus = InMemoryFeedbackBus()
    failing = bus.add_handler(flaky, name="flaky")
    bus.add_handler(lambda m: good.append(m.seq), name="good")  # type: ignore[union-attr]
    for seq in range(1, 5):
        await bus.publish(make_feedback_event(seq=seq))
    await bus.aclose()
    assert calls == [1, 2, 3, 4]
    assert good == [1, 2, 3, 4]
    assert failing.errors == 2
    failures = [r for r in caplog.records if r.getMessage().startswith("feedback handler failed")]
    assert [r.__dict__["handler"] for r in failures] == ["flaky", "flaky"]


async def test_close_ends_iteration_and_unsubscribes() -> None:
    bus = InMemoryFeedbackBus()
    sub = bus.subscribe()
    await bus.publish(make_feedback_event(seq=1))
    sub.close()
    await bus.publish(make_feedback_event(seq=2))
    received = [m async for m in sub]
    assert [m.seq for m in received] == [1]  # type: ignore[union-attr]
    assert sub not in bus.subscriptions


async def test_bus_iterates_itself() -> None:
    bus = InMemoryFeedbackBus()
    iterator = aiter(bus)
    await bus.publish(make_feedback_event(seq=3))
    message = await asyncio.wait_for(anext(iterator), scaled(1))
    assert isinstance(message, FeedbackEvent)
    assert message.seq == 3


async def test_satisfies_the_core_protocols() -> None:
    bus = InMemoryFeedbackBus()
    assert isinstance(bus, FeedbackPublisher)
    assert isinstance(bus, FeedbackSubscriber)

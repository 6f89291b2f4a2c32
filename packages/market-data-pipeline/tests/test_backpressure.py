"""BackpressureController: levels to scales, pausing, stale and restarted coordinators, TTL
silence, published adjustments and the token bucket (on an injected clock: no timing)."""

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from market_data_core import (
    BackpressureLevel,
    ConfigurationError,
    FeedbackEvent,
    InMemoryFeedbackBus,
    RateAdjustment,
    RateController,
)
from market_data_core.testing import T0
from market_data_core.testing.servers import scaled
from market_data_pipeline.backpressure import BackpressureController
from market_data_pipeline.metrics import PipelineMetrics

OK, SOFT, HARD = BackpressureLevel.OK, BackpressureLevel.SOFT, BackpressureLevel.HARD
QUEUE = {OK: 10, SOFT: 60, HARD: 95}


def fb(level: BackpressureLevel, seq: int, *, cid: str = "store-1", at: float | None = None):
    """An event of coordinator ``cid``; its ``ts`` is ``at`` seconds after T0 (default seq)."""
    return FeedbackEvent(
        coordinator_id=cid,
        queue_size=QUEUE[level],
        capacity=100,
        level=level,
        ts=T0 + timedelta(seconds=seq if at is None else at),
        seq=seq,
    )


class FakeTime:
    """A monotonic clock that moves only when told, and a sleep that moves it (and records)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def settle() -> None:
    """Let every ready task run (event-loop turns, no timing)."""
    for _ in range(20):
        await asyncio.sleep(0)


def controller(clock: FakeTime | None = None, **kwargs) -> BackpressureController:
    time = clock or FakeTime()
    return BackpressureController("synthetic", clock=time, sleep=time.sleep, **kwargs)


def test_is_a_core_rate_controller() -> None:
    assert isinstance(controller(), RateController)


@pytest.mark.asyncio
async def test_levels_map_to_scales_and_changes_are_returned() -> None:
    rate = controller()
    assert rate.scale == 1.0
    assert rate.level is None
    assert await rate.on_feedback(fb(OK, 1)) is None  # already at full rate
    soft = await rate.on_feedback(fb(SOFT, 2))
    assert soft is not None
    assert (soft.scale, soft.level, soft.coordinator_id) == (0.5, SOFT, "store-1")
    assert soft.reason == "store coordinator store-1 at soft (queue 60%)"
    hard = await rate.on_feedback(fb(HARD, 3))
    assert hard is not None
    assert (hard.scale, hard.paused, hard.reason) == (
        0.0,
        True,
        "store coordinator store-1 at hard (queue 95%)",
    )
    assert rate.paused
    ok = await rate.on_feedback(fb(OK, 4))
    assert ok is not None
    assert (ok.scale, rate.scale, rate.level) == (1.0, 1.0, OK)
    assert soft.ts <= hard.ts <= ok.ts


@pytest.mark.asyncio
async def test_soft_scale_is_configurable() -> None:
    rate = controller(soft_scale=0.25)
    adjustment = await rate.on_feedback(fb(SOFT, 1))
    assert adjustment is not None
    assert adjustment.scale == rate.scale == 0.25


@pytest.mark.parametrize(
    "kwargs",
    [{"soft_scale": 0}, {"soft_scale": 1.5}, {"base_rate": 0}, {"ttl": 0}, {"burst_seconds": -1}],
)
def test_unusable_settings_are_configuration_errors(kwargs: dict[str, float]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ConfigurationError, match=name):
        controller(**kwargs)


def test_the_provider_must_be_a_name() -> None:
    with pytest.raises(ConfigurationError, match="provider"):
        BackpressureController("my provider")


@pytest.mark.asyncio
async def test_acquire_blocks_while_hard_and_ok_releases_it() -> None:
    time = FakeTime()
    rate = controller(time)
    await rate.on_feedback(fb(HARD, 1))
    waiter = asyncio.create_task(rate.acquire(100))
    await settle()
    assert not waiter.done()  # paused: the provider waits
    time.advance(3.0)
    await rate.on_feedback(fb(SOFT, 2))
    async with asyncio.timeout(10):
        await waiter
    assert rate.pauses == 1
    assert rate.paused_seconds == pytest.approx(3.0)
    assert time.sleeps == []  # released by the event, never by polling


@pytest.mark.asyncio
async def test_pauses_are_counted_per_pause_and_time_paused_adds_up() -> None:
    time = FakeTime()
    rate = controller(time)
    for seq, (level, seconds) in enumerate(
        [(HARD, 2.0), (OK, 1.0), (HARD, 0.5), (SOFT, 1.0), (HARD, 0.25)], start=1
    ):
        await rate.on_feedback(fb(level, seq))
        time.advance(seconds)
    assert rate.pauses == 3
    assert rate.paused_seconds == pytest.approx(2.75)  # the current pause included


@pytest.mark.asyncio
async def test_stale_events_are_ignored() -> None:
    rate = controller()
    await rate.on_feedback(fb(HARD, 5))
    assert await rate.on_feedback(fb(OK, 4)) is None  # older seq, older ts
    assert await rate.on_feedback(fb(HARD, 5)) is None  # the same event again
    assert rate.paused
    assert rate.dropped_stale == 2
    assert await rate.on_feedback(fb(HARD, 5, at=6)) is None  # a heartbeat: accepted, no change
    assert rate.accepted == 2
    assert await rate.on_feedback(fb(OK, 6)) is not None
    assert rate.scale == 1.0


@pytest.mark.asyncio
async def test_silence_past_the_ttl_holds_the_rate() -> None:
    time = FakeTime()
    rate = controller(time, ttl=15.0)
    assert rate.stale  # never heard from: unknown
    await rate.on_feedback(fb(HARD, 3))
    assert not rate.stale
    time.advance(60.0)
    assert rate.stale
    waiter = asyncio.create_task(rate.acquire(1))
    await settle()
    assert not waiter.done()  # unknown is not ok: still paused
    assert (rate.scale, rate.level) == (0.0, HARD)
    # once the old state is past the TTL, whatever the coordinator says next is accepted
    assert await rate.on_feedback(fb(OK, 1, at=0)) is not None
    async with asyncio.timeout(10):
        await waiter
    assert not rate.stale


@pytest.mark.asyncio
async def test_silence_under_soft_keeps_the_reduced_rate() -> None:
    time = FakeTime()
    rate = controller(time, base_rate=100.0)
    await rate.on_feedback(fb(SOFT, 1))
    time.advance(3600.0)
    assert rate.stale
    assert (rate.scale, rate.rate) == (0.5, 50.0)


@pytest.mark.asyncio
async def test_a_restarted_coordinator_is_accepted() -> None:
    rate = controller()
    await rate.on_feedback(fb(HARD, 40, at=100))
    # restarted: its seq starts again, with a newer ts
    adjustment = await rate.on_feedback(fb(OK, 1, at=200))
    assert adjustment is not None
    assert rate.scale == 1.0
    assert await rate.on_feedback(fb(HARD, 2, at=201)) is not None  # and it is followed on


@pytest.mark.asyncio
async def test_restarts_follow_publisher_ids_when_known() -> None:
    rate = controller()
    await rate.on_feedback(fb(HARD, 40, at=100), publisher="a")
    # the same instance re-sending an older state (a heartbeat race) is stale, even if newer
    assert await rate.on_feedback(fb(OK, 39, at=101), publisher="a") is None
    # another instance is a restart, even with a clock behind
    assert await rate.on_feedback(fb(OK, 1, at=50), publisher="b") is not None
    assert rate.scale == 1.0


@pytest.mark.asyncio
async def test_adjustments_are_published_on_change_only() -> None:
    bus = InMemoryFeedbackBus()
    seen = bus.subscribe(name="orchestrator")
    rate = controller(publisher=bus)
    events = [
        fb(OK, 1),
        fb(SOFT, 2),
        fb(SOFT, 2, at=2.5),  # heartbeat
        fb(HARD, 3),
        fb(HARD, 4),
        fb(OK, 5),
        fb(OK, 5, at=9),
    ]
    returned = [await rate.on_feedback(event) for event in events]
    seen.close()
    published = [message async for message in seen if isinstance(message, RateAdjustment)]
    assert seen.received == len(published)  # nothing but rate adjustments
    assert published == [r for r in returned if r is not None]
    assert [(m.scale, m.level) for m in published] == [(0.5, SOFT), (0.0, HARD), (1.0, OK)]
    latest = bus.latest_rate("synthetic")
    assert latest is not None
    assert latest.scale == 1.0


@pytest.mark.asyncio
async def test_a_failing_publisher_never_stops_the_rate_change() -> None:
    class Down:
        async def publish(self, message: object) -> None:
            raise ConnectionError("transport down")

    rate = controller(publisher=Down())
    adjustment = await rate.on_feedback(fb(HARD, 1))
    assert adjustment is not None
    assert rate.paused


@pytest.mark.asyncio
async def test_one_coordinator_is_followed_or_the_worst_of_all() -> None:
    only = controller(coordinator_id="store-1")
    assert await only.on_feedback(fb(HARD, 1, cid="store-2")) is None
    assert (only.scale, only.ignored) == (1.0, 1)

    worst = controller()
    await worst.on_feedback(fb(HARD, 1, cid="store-2"))
    assert await worst.on_feedback(fb(OK, 1, cid="store-1")) is None  # store-2 is still hard
    assert worst.paused
    adjustment = await worst.on_feedback(fb(SOFT, 2, cid="store-2"))
    assert adjustment is not None
    assert (adjustment.scale, adjustment.coordinator_id) == (0.5, "store-2")
    adjustment = await worst.on_feedback(fb(OK, 3, cid="store-2"))
    assert adjustment is not None
    assert adjustment.scale == 1.0


@pytest.mark.asyncio
async def test_metrics_show_the_scale_and_count_pauses() -> None:
    metrics = PipelineMetrics(CollectorRegistry())
    rate = controller(metrics=metrics)
    labels = {"provider": "synthetic"}
    registry = metrics.registry
    assert registry.get_sample_value("pipeline_backpressure_scale", labels) == 1.0
    await rate.on_feedback(fb(HARD, 1))
    assert registry.get_sample_value("pipeline_backpressure_scale", labels) == 0.0
    await rate.on_feedback(fb(SOFT, 2))
    await rate.on_feedback(fb(HARD, 3))
    assert registry.get_sample_value("pipeline_backpressure_pauses_total", labels) == 2.0
    await rate.on_feedback(fb(SOFT, 4))
    assert registry.get_sample_value("pipeline_backpressure_scale", labels) == 0.5


@pytest.mark.asyncio
async def test_token_bucket_schedule_at_the_base_rate_then_reduced() -> None:
    time = FakeTime()
    rate = controller(time, base_rate=10.0, burst_seconds=1.0)
    await rate.acquire(10)  # a full bucket: one second's worth at once
    assert time.sleeps == []
    await rate.acquire(5)
    await rate.acquire(5)
    assert time.sleeps == pytest.approx([0.5, 0.5])
    await rate.on_feedback(fb(SOFT, 1))
    assert rate.rate == 5.0
    await rate.acquire(5)
    assert time.sleeps == pytest.approx([0.5, 0.5, 1.0])
    await rate.on_feedback(fb(OK, 2))
    await rate.acquire(10)
    assert time.sleeps == pytest.approx([0.5, 0.5, 1.0, 1.0])


@pytest.mark.asyncio
async def test_a_batch_larger_than_the_bucket_goes_and_the_next_waits_for_the_debt() -> None:
    time = FakeTime()
    rate = controller(time, base_rate=10.0, burst_seconds=1.0)
    await rate.acquire(30)
    assert time.sleeps == []
    await rate.acquire(1)
    assert sum(time.sleeps) == pytest.approx(2.1)  # 20 owed + 1, at 10/s


@pytest.mark.asyncio
async def test_a_rate_change_reevaluates_a_throttled_wait() -> None:
    time = FakeTime()
    never = asyncio.Event()

    async def long_sleep(seconds: float) -> None:
        await never.wait()

    rate = BackpressureController("synthetic", base_rate=1.0, clock=time, sleep=long_sleep)
    await rate.acquire(1)
    await rate.on_feedback(fb(SOFT, 1))
    waiter = asyncio.create_task(rate.acquire(1))
    await settle()
    assert not waiter.done()  # throttled at 0.5/s
    await rate.on_feedback(fb(HARD, 2))
    time.advance(10.0)
    await settle()
    assert not waiter.done()  # the bucket would allow it now, but the store is hard
    await rate.on_feedback(fb(OK, 3))
    async with asyncio.timeout(10):
        await waiter


@pytest.mark.asyncio
async def test_soft_without_a_base_rate_caps_below_the_measured_rate() -> None:
    time = FakeTime()
    rate = controller(time, measure_window=0.5)
    for _ in range(11):  # 100 records every 0.1 s at full speed: 1000/s
        await rate.acquire(100)
        time.advance(0.1)
    assert time.sleeps == []
    assert rate.measured_rate == pytest.approx(1000.0)
    await rate.on_feedback(fb(SOFT, 1))
    assert rate.rate == pytest.approx(500.0)
    started = time.now
    for _ in range(5):
        await rate.acquire(100)
    granted_rate = 500 / (time.now - started)
    assert granted_rate == pytest.approx(500.0)
    assert granted_rate < (rate.measured_rate or 0.0)
    await rate.on_feedback(fb(OK, 2))
    sleeps = len(time.sleeps)
    await rate.acquire(10_000)
    assert (rate.rate, len(time.sleeps)) == (None, sleeps)  # unlimited again


@pytest.mark.asyncio
async def test_soft_before_any_measurement_caps_after_the_first_window() -> None:
    time = FakeTime()
    rate = controller(time, measure_window=0.5)
    await rate.on_feedback(fb(SOFT, 1))
    assert rate.rate is None  # nothing measured yet
    for _ in range(6):
        await rate.acquire(100)
        time.advance(0.1)
    assert rate.rate == pytest.approx(0.5 * 1000.0)
    assert rate.measured_rate == pytest.approx(1000.0)


@pytest.mark.asyncio
async def test_pause_time_is_not_measured_as_throughput() -> None:
    time = FakeTime()
    rate = controller(time, measure_window=0.5)
    for _ in range(6):
        await rate.acquire(100)
        time.advance(0.1)
    await rate.on_feedback(fb(HARD, 1))
    time.advance(100.0)
    await rate.on_feedback(fb(SOFT, 2))
    assert rate.rate == pytest.approx(500.0)


@pytest.mark.asyncio
async def test_close_releases_waiters_and_stops_following_feedback() -> None:
    rate = controller()
    await rate.on_feedback(fb(HARD, 1))
    waiter = asyncio.create_task(rate.acquire(5))
    await settle()
    assert not waiter.done()
    await rate.close()
    async with asyncio.timeout(10):
        await waiter
    assert await rate.on_feedback(fb(OK, 2)) is None
    await rate.acquire(1)  # no longer limits


# -- the one controller: a supervisor's pause, the job's stop, no feedback ------------------


@pytest.mark.asyncio
async def test_a_manual_pause_holds_acquire_until_resumed_whatever_the_feedback() -> None:
    rate = controller()
    rate.pause()
    assert (rate.paused, rate.held, rate.scale, rate.rate) == (True, True, 0.0, 0.0)
    waiter = asyncio.ensure_future(rate.acquire(10))
    await settle()
    assert not waiter.done()
    await rate.on_feedback(fb(OK, 1))  # the store is fine: still held
    await settle()
    assert not waiter.done()
    rate.resume()
    await asyncio.wait_for(waiter, scaled(1))
    assert (rate.paused, rate.held, rate.scale, rate.pauses) == (False, False, 1.0, 0)


@pytest.mark.asyncio
async def test_resuming_a_manual_pause_under_hard_backpressure_still_waits_for_the_store() -> None:
    rate = controller()
    await rate.on_feedback(fb(HARD, 1))
    rate.pause()
    waiter = asyncio.ensure_future(rate.acquire(1))
    rate.resume()
    await settle()
    assert not waiter.done()
    assert rate.paused
    await rate.on_feedback(fb(OK, 2))
    await asyncio.wait_for(waiter, scaled(1))


@pytest.mark.asyncio
@pytest.mark.parametrize("held", ["manual pause", "hard backpressure", "rate debt"])
async def test_stop_releases_a_waiting_acquire_and_later_ones_never_wait(held: str) -> None:
    # the real clock for the debt: a fake sleep would pay it at once
    rate = (
        BackpressureController("synthetic", base_rate=1.0) if held == "rate debt" else controller()
    )
    if held == "manual pause":
        rate.pause()
    elif held == "hard backpressure":
        await rate.on_feedback(fb(HARD, 1))
    else:
        await rate.acquire(100)  # 100 s of debt
    waiter = asyncio.ensure_future(rate.acquire(100))
    await settle()
    assert not waiter.done()
    rate.stop()
    await asyncio.wait_for(waiter, scaled(1))
    await asyncio.wait_for(rate.acquire(1000), scaled(1))
    assert rate.stopped
    await rate.on_feedback(fb(SOFT, 5))  # feedback is still followed after a stop
    assert rate.level is SOFT


@pytest.mark.asyncio
async def test_unlimited_ignores_feedback_and_never_waits() -> None:
    rate = BackpressureController.unlimited()
    assert isinstance(rate, RateController)
    assert await rate.on_feedback(fb(HARD, 1)) is None
    assert (rate.scale, rate.level, rate.accepted) == (1.0, None, 0)
    await asyncio.wait_for(rate.acquire(10_000), scaled(1))

"""WriteCoordinator: batching, overflow, retries, breaker, crashes, draining, feedback,
health, and the accounting invariant. The writer is a fake (see conftest.py)."""

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from structlog.testing import capture_logs

from market_data_core import BackpressureLevel, HealthState, InMemoryFeedbackBus
from market_data_core.testing.servers import scaled
from market_data_store.backends.base import Record
from market_data_store.coordinator import CoordinatorState, CoordinatorStats, WriteCoordinator
from market_data_store.dlq import FileDeadLetterStore
from market_data_store.exceptions import (
    CoordinatorStoppedError,
    PermanentBackendError,
    QueueFullError,
    StoreConfigurationError,
    TransientBackendError,
)
from market_data_store.retry import BreakerState, CircuitBreaker
from market_data_store.watermarks import Watermarks

pytestmark = pytest.mark.asyncio

Make = Callable[..., Awaitable[WriteCoordinator]]
OK, SOFT, HARD = BackpressureLevel.OK, BackpressureLevel.SOFT, BackpressureLevel.HARD


def bag(records: Sequence[Record]) -> Counter[str]:
    """Records as a multiset (signals are not hashable: count their JSON)."""
    return Counter(f"{type(r).__name__}:{r.model_dump_json()}" for r in records)


def assert_accounted(stats: CoordinatorStats) -> None:
    settled = stats.written + stats.dead_lettered + stats.dropped + stats.failed
    assert stats.accepted == settled + stats.queue_size + stats.in_flight
    assert stats.unaccounted == 0


async def dead_lettered(store: FileDeadLetterStore) -> list[Record]:
    return [record async for entry in store.read() for record in entry.records]


@pytest.fixture
def dlq(tmp_path: Path) -> FileDeadLetterStore:
    return FileDeadLetterStore(tmp_path / "dlq.ndjson")


# -- configuration and lifecycle -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"capacity": 0}, "capacity"),
        ({"workers": 0}, "workers"),
        ({"batch_size": 0}, "batch_size"),
        ({"flush_interval": -1.0}, "flush_interval"),
        ({"overflow": "spill"}, "overflow"),
        ({"heartbeat_interval": 0.0}, "heartbeat_interval"),
        ({"publish_timeout": float("nan")}, "publish_timeout"),
        ({"coordinator_id": "has space"}, "coordinator_id"),
    ],
)
async def test_invalid_settings_name_the_argument(
    kit: SimpleNamespace, kwargs: dict[str, Any], field: str
) -> None:
    kwargs.setdefault("coordinator_id", "store-1")
    with pytest.raises(StoreConfigurationError, match=field):
        WriteCoordinator(kit.FakeWriter(), **kwargs)


async def test_refuses_writes_before_start_and_after_stop(make_coordinator: Make) -> None:
    coordinator = await make_coordinator(start=False)
    with pytest.raises(CoordinatorStoppedError, match="created"):
        await coordinator.submit(_one())
    await coordinator.start()
    await coordinator.submit(_one())
    await coordinator.stop()
    assert coordinator.state is CoordinatorState.STOPPED
    with pytest.raises(CoordinatorStoppedError, match="stopped"):
        await coordinator.submit(_one())
    await coordinator.stop()  # idempotent


async def test_context_manager_drains_on_exit(
    kit: SimpleNamespace, recording_publisher: Any
) -> None:
    writer = kit.FakeWriter()
    records = kit.mixed(57)
    async with WriteCoordinator(
        writer, coordinator_id="ctx", batch_size=10, flush_interval=10.0,
        publisher=recording_publisher,
    ) as coordinator:  # fmt: skip
        await coordinator.submit_many(records)
    assert writer.written == records  # one producer, FIFO: order is kept per worker batch
    assert coordinator.stats().written == 57


async def test_default_publisher_is_an_in_memory_bus(kit: SimpleNamespace) -> None:
    coordinator = WriteCoordinator(kit.FakeWriter(), coordinator_id="bus")
    assert isinstance(coordinator.publisher, InMemoryFeedbackBus)
    bus = coordinator.publisher
    async with coordinator:
        await kit.eventually(lambda: bus.latest("bus") is not None, what="the first event")
        latest = bus.latest("bus")
        assert latest is not None
        assert latest.level is OK


async def test_can_start_again_after_stop(
    make_coordinator: Make, fake_writer: Any, recording_publisher: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator()
    await coordinator.submit_many(kit.trades(5))
    await coordinator.stop()
    await coordinator.start()
    await coordinator.submit_many(kit.trades(5, start=5))
    await coordinator.stop()
    assert len(fake_writer.written) == 10
    seqs = [event.seq for event in recording_publisher.events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


# -- batching and draining -----------------------------------------------------------------


async def test_drain_flushes_everything_accepted(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    fake_writer.delay = 0.001
    coordinator = await make_coordinator(capacity=50, workers=3, batch_size=7)
    records = kit.trades(500)
    producers = [coordinator.submit_many(records[i : i + 50]) for i in range(0, 500, 50)]
    await asyncio.gather(*producers)
    await coordinator.stop(drain=True)
    stats = coordinator.stats()
    assert stats.accepted == stats.written == 500
    assert Counter(fake_writer.written) == Counter(records)
    assert max(fake_writer.batches) <= 7
    assert stats.queue_size == stats.in_flight == 0
    assert_accounted(stats)


async def test_a_lone_record_is_written_after_the_flush_interval(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(batch_size=1000, flush_interval=0.01)
    await coordinator.submit(_one())
    await kit.eventually(lambda: fake_writer.batches == [1], what="a batch of one")
    assert coordinator.stats().written == 1


async def test_a_batch_counts_once_settled_not_while_its_write_is_in_flight(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(workers=1)
    await _hold_first_batch(coordinator, fake_writer, kit)
    assert coordinator.stats().batches == 0  # taken, not yet written
    fake_writer.release()
    await asyncio.wait_for(coordinator.flush(), scaled(10))
    assert coordinator.stats().batches == 1
    assert coordinator.stats().written == 1


async def test_flush_waits_for_what_was_accepted_before(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    fake_writer.delay = 0.002
    coordinator = await make_coordinator(batch_size=5, flush_interval=10.0)
    await coordinator.submit_many(kit.trades(23))
    await asyncio.wait_for(coordinator.flush(), scaled(10))
    assert coordinator.stats().written >= 23
    assert len(fake_writer.written) >= 23


# -- overflow ------------------------------------------------------------------------------


async def _hold_first_batch(
    coordinator: WriteCoordinator, writer: Any, kit: SimpleNamespace
) -> Record:
    """Leave one record in flight at the writer's gate; the queue is then all ours."""
    writer.hold()
    first = _one(symbol="FIRST")
    await coordinator.submit(first)
    await kit.eventually(lambda: writer.calls == 1, what="the first write to start")
    return first


async def test_block_waits_for_space_then_completes(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(capacity=10, workers=1, batch_size=10)
    await _hold_first_batch(coordinator, fake_writer, kit)
    await coordinator.submit_many(kit.trades(10))
    blocked = asyncio.create_task(coordinator.submit_many(kit.trades(5, start=10)))
    await kit.settle()
    assert not blocked.done()  # the queue is full and nothing is written
    assert coordinator.stats().accepted == 11
    fake_writer.release()
    await asyncio.wait_for(blocked, scaled(10))
    await coordinator.stop()
    assert coordinator.stats().written == 16
    assert coordinator.stats().dropped == 0


async def test_block_accepts_a_batch_larger_than_the_capacity_in_parts(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(capacity=8, batch_size=3)
    records = kit.trades(100)
    await asyncio.wait_for(coordinator.submit_many(records), scaled(10))
    await coordinator.stop()
    assert Counter(fake_writer.written) == Counter(records)


async def test_a_blocked_producer_is_told_when_the_coordinator_stops(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    coordinator = await make_coordinator(capacity=5, workers=1, dead_letters=dlq)
    await _hold_first_batch(coordinator, fake_writer, kit)
    blocked = asyncio.create_task(coordinator.submit_many(kit.trades(8)))
    await kit.settle()
    await coordinator.stop(drain=False)
    with pytest.raises(CoordinatorStoppedError, match="5 of 8 records were accepted"):
        await blocked
    stats = coordinator.stats()
    assert stats.accepted == 6
    assert stats.dead_lettered == 6  # queued and in flight: kept, not lost
    assert_accounted(stats)


async def test_drop_oldest_keeps_the_newest_and_counts_the_dropped(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(
        capacity=10, workers=1, batch_size=10, overflow="drop_oldest"
    )
    first = await _hold_first_batch(coordinator, fake_writer, kit)
    records = kit.trades(14)
    await coordinator.submit_many(records[:6])
    await coordinator.submit_many(records[6:])  # 4 too many: the 4 oldest go
    stats = coordinator.stats()
    assert (stats.accepted, stats.dropped, stats.queue_size) == (15, 4, 10)
    fake_writer.release()
    await coordinator.stop()
    assert fake_writer.written == [first, *records[4:]]
    assert_accounted(coordinator.stats())


async def test_drop_oldest_with_a_batch_larger_than_the_capacity(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(capacity=5, workers=1, overflow="drop_oldest")
    first = await _hold_first_batch(coordinator, fake_writer, kit)
    records = kit.trades(12)
    await coordinator.submit_many(records)
    assert coordinator.stats().dropped == 7
    fake_writer.release()
    await coordinator.stop()
    assert fake_writer.written == [first, *records[7:]]


async def test_error_overflow_refuses_the_whole_batch(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(capacity=10, workers=1, overflow="error")
    await _hold_first_batch(coordinator, fake_writer, kit)
    await coordinator.submit_many(kit.trades(7))
    with pytest.raises(QueueFullError, match="none were accepted"):
        await coordinator.submit_many(kit.trades(4, start=7))
    stats = coordinator.stats()
    assert (stats.accepted, stats.queue_size, stats.dropped) == (8, 7, 0)
    await coordinator.submit_many(kit.trades(3, start=7))  # what fits is accepted
    assert coordinator.stats().queue_size == 10
    fake_writer.release()
    await coordinator.stop()
    assert coordinator.stats().written == 11


# -- failures --------------------------------------------------------------------------------


async def test_transient_failures_are_retried(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    fake_writer.transient = 2
    coordinator = await make_coordinator(workers=1, retry=kit.fast_retry(5), dead_letters=dlq)
    await coordinator.submit_many(kit.trades(4))
    await coordinator.stop()
    stats = coordinator.stats()
    assert (stats.written, stats.retries, stats.dead_lettered) == (4, 2, 0)
    assert await dlq.count() == 0


async def test_exhausted_retries_send_the_batch_to_the_dead_letter_store_when_asked(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    fake_writer.transient = 3
    coordinator = await make_coordinator(
        workers=1, retry=kit.fast_retry(3), dead_letters=dlq, on_outage="dead_letter"
    )
    records = kit.trades(4)
    await coordinator.submit_many(records)
    await coordinator.stop()
    stats = coordinator.stats()
    assert (stats.written, stats.dead_lettered, stats.retries) == (0, 4, 2)
    [entry] = [entry async for entry in dlq.read()]
    assert (list(entry.records), entry.attempts) == (records, 3)
    assert entry.error.startswith("TransientBackendError")


async def test_by_default_a_batch_outlives_its_retries_during_an_outage(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    """Three rounds of two attempts fail (the database is down); the fourth round writes."""
    fake_writer.transient = 6
    coordinator = await make_coordinator(workers=1, retry=kit.fast_retry(2), dead_letters=dlq)
    await coordinator.submit_many(kit.trades(4))
    await asyncio.wait_for(coordinator.flush(), scaled(10))
    stats = coordinator.stats()
    assert (stats.written, stats.dead_lettered, stats.outage_rounds) == (4, 0, 3)
    assert await dlq.count() == 0
    assert fake_writer.calls == 7


async def test_a_stop_during_an_outage_dead_letters_what_is_held_and_ends(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    fake_writer.transient = 10**6  # the database never comes back
    coordinator = await make_coordinator(
        workers=1, batch_size=2, retry=kit.fast_retry(2), dead_letters=dlq
    )
    await coordinator.submit_many(kit.trades(6))
    await kit.eventually(lambda: coordinator.stats().outage_rounds >= 2, what="a held batch")
    await asyncio.wait_for(coordinator.stop(), scaled(10))
    stats = coordinator.stats()
    assert (stats.written, stats.dead_lettered, stats.failed, stats.dropped) == (0, 6, 0, 0)
    kept = [record for entry in [e async for e in dlq.read()] for record in entry.records]
    assert sorted(kept, key=lambda t: t.ts) == kit.trades(6)
    assert_accounted(stats)


async def test_on_outage_must_be_known(fake_writer: Any) -> None:
    with pytest.raises(StoreConfigurationError, match="on_outage"):
        WriteCoordinator(fake_writer, coordinator_id="x", on_outage="ignore")  # type: ignore[arg-type]


async def test_permanent_failures_go_to_the_dead_letter_store_at_once(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    """A permanent error is not retried. Every part of the batch failing too (it is split
    to find records at fault), the failure is systemic: dead-lettered as the batch it was,
    counted once for the breaker, no record of it blamed on its caller."""
    fake_writer.permanent = True
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=60)
    coordinator = await make_coordinator(
        workers=1, retry=kit.fast_retry(5), dead_letters=dlq, breaker=breaker
    )
    receipt = await coordinator.submit_many(kit.trades(3))
    await coordinator.stop()
    stats = coordinator.stats()
    assert (stats.dead_lettered, stats.retries, stats.refused) == (3, 0, 0)
    assert fake_writer.calls == 5  # the batch, then its parts: [1] [2] -> [1] [1]
    [entry] = [entry async for entry in dlq.read()]
    assert list(entry.records) == kit.trades(3)
    assert entry.error == "PermanentBackendError: constraint violated"
    assert receipt.refused == []
    assert breaker.consecutive_failures == 1


async def test_without_a_dead_letter_store_failures_are_counted(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    fake_writer.permanent = True
    coordinator = await make_coordinator(workers=1)
    await coordinator.submit_many(kit.trades(3))
    await coordinator.stop()
    stats = coordinator.stats()
    assert (stats.failed, stats.written, stats.dead_lettered) == (3, 0, 0)
    assert_accounted(stats)


# -- circuit breaker -------------------------------------------------------------------------


async def test_open_breaker_stops_consumption_so_backpressure_goes_hard(
    make_coordinator: Make,
    fake_writer: Any,
    kit: SimpleNamespace,
    dlq: FileDeadLetterStore,
    recording_publisher: Any,
) -> None:
    clock = kit.FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30, clock=clock)
    fake_writer.transient = 10**6  # the database is down
    coordinator = await make_coordinator(
        capacity=20, workers=2, batch_size=2, retry=kit.fast_retry(2), breaker=breaker,
        dead_letters=dlq, watermarks=Watermarks(high=0.8, low=0.5, soft=0.6),
    )  # fmt: skip
    await coordinator.submit_many(kit.trades(4))
    await kit.eventually(lambda: breaker.state is BreakerState.OPEN, what="the breaker to open")
    await kit.settle()
    calls = fake_writer.calls
    await coordinator.submit_many(kit.trades(18, start=4))  # 18 of 20: above high
    await kit.settle()
    stats = coordinator.stats()
    assert stats.queue_size == 18  # nothing taken while open
    assert stats.in_flight == 4  # the two batches that met the outage are held, not lost
    assert fake_writer.calls == calls
    assert coordinator.level is HARD
    assert [c.state for c in coordinator.health()][2] is HealthState.UNHEALTHY

    fake_writer.transient = 0  # the database is back; time passes
    clock.advance(30)
    await asyncio.wait_for(coordinator.flush(), scaled(10))
    assert breaker.state is BreakerState.CLOSED
    await coordinator.stop()
    stats = coordinator.stats()
    assert stats.written == 22  # the held batches too, once the database is back
    assert stats.dropped == stats.failed == stats.dead_lettered == 0
    assert HARD in [event.level for event in recording_publisher.events]


async def test_breaker_counts_batches_not_attempts(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30, clock=kit.FakeClock())
    fake_writer.transient = 5  # five failed attempts, all in one batch
    coordinator = await make_coordinator(
        workers=1, retry=kit.fast_retry(6), breaker=breaker, dead_letters=dlq
    )
    await coordinator.submit_many(kit.trades(3))
    await coordinator.flush()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    assert coordinator.stats().written == 3


# -- crashes ---------------------------------------------------------------------------------


async def test_a_crashed_worker_is_restarted_and_its_batch_is_written(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    fake_writer.crashes = 1
    coordinator = await make_coordinator(workers=1, batch_size=5)
    records = kit.trades(12)
    with capture_logs() as logs:
        await coordinator.submit_many(records)
        await coordinator.stop()
    stats = coordinator.stats()
    assert stats.worker_restarts == 1
    assert stats.written == 12
    assert Counter(fake_writer.written) == Counter(records)
    assert any("crashed; restarting it" in log["event"] for log in logs)


async def test_a_batch_that_keeps_crashing_workers_is_dead_lettered(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    fake_writer.crashes = 2
    coordinator = await make_coordinator(workers=1, batch_size=5, dead_letters=dlq)
    records = kit.trades(5)
    await coordinator.submit_many(records)
    await coordinator.submit_many(kit.trades(3, start=5))
    await coordinator.stop()
    stats = coordinator.stats()
    assert stats.worker_restarts == 2
    assert await dead_lettered(dlq) == records
    assert (stats.dead_lettered, stats.written) == (5, 3)
    [entry] = [entry async for entry in dlq.read()]
    assert entry.error.startswith("worker crashed: WriterCrashError")


async def test_workers_health_reflects_liveness(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(workers=3)
    health = {c.name: c for c in coordinator.health()}
    assert set(health) == {"write_queue", "workers", "circuit_breaker"}
    assert health["workers"].state is HealthState.HEALTHY
    assert health["workers"].details["alive"] == 3
    assert health["write_queue"].state is HealthState.HEALTHY
    await coordinator.stop()
    health = {c.name: c for c in coordinator.health()}
    assert health["workers"].state is HealthState.UNHEALTHY
    assert health["write_queue"].state is HealthState.UNHEALTHY


async def test_hard_backpressure_degrades_the_queue(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(capacity=10, workers=1)
    await _hold_first_batch(coordinator, fake_writer, kit)
    await coordinator.submit_many(kit.trades(9))
    queue = coordinator.health()[0]
    assert (queue.name, queue.state) == ("write_queue", HealthState.DEGRADED)
    assert queue.details["level"] == "hard"


# -- stopping without draining -----------------------------------------------------------------


async def test_stop_without_drain_dead_letters_queued_and_in_flight(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    coordinator = await make_coordinator(capacity=50, workers=1, batch_size=4, dead_letters=dlq)
    first = await _hold_first_batch(coordinator, fake_writer, kit)
    records = kit.trades(9)
    await coordinator.submit_many(records)
    await coordinator.stop(drain=False)
    stats = coordinator.stats()
    assert (stats.dead_lettered, stats.written, stats.queue_size, stats.in_flight) == (10, 0, 0, 0)
    assert Counter(await dead_lettered(dlq)) == Counter([first, *records])
    assert_accounted(stats)


async def test_stop_without_drain_and_without_dead_letters_counts_drops(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(workers=1)
    await _hold_first_batch(coordinator, fake_writer, kit)
    await coordinator.submit_many(kit.trades(6))
    await coordinator.stop(drain=False)
    stats = coordinator.stats()
    assert (stats.dropped, stats.accepted) == (7, 7)
    assert_accounted(stats)


async def test_a_drain_that_times_out_falls_back_to_the_dead_letter_store(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, dlq: FileDeadLetterStore
) -> None:
    coordinator = await make_coordinator(workers=2, dead_letters=dlq)
    await _hold_first_batch(coordinator, fake_writer, kit)  # never released
    await coordinator.submit_many(kit.trades(30))
    await coordinator.stop(drain=True, drain_timeout=0.05)
    stats = coordinator.stats()
    assert stats.dead_lettered + stats.written == 31
    assert stats.state is CoordinatorState.STOPPED
    assert_accounted(stats)


# -- feedback --------------------------------------------------------------------------------


async def test_each_level_change_publishes_once_with_a_higher_seq(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, recording_publisher: Any
) -> None:
    coordinator = await make_coordinator(
        coordinator_id="store-fb", capacity=10, workers=1, batch_size=10,
        watermarks=Watermarks(high=0.8, low=0.5, soft=0.6, soft_low=0.3),
    )  # fmt: skip
    await _hold_first_batch(coordinator, fake_writer, kit)
    for i in range(10):  # one record at a time: 10% .. 100%
        await coordinator.submit(_one(symbol=f"S{i}"))
    await kit.settle()
    fake_writer.release()
    await coordinator.flush()
    await coordinator.stop()
    events = recording_publisher.events
    assert [(e.seq, e.level) for e in events] == [
        (1, OK),  # started
        (2, SOFT),  # 6 of 10
        (3, HARD),  # 8 of 10
        (4, OK),  # the worker took all 10 at once: straight down
        (5, HARD),  # stopping: no more writes accepted
    ]
    assert events[2].reason == "queue 80% >= high watermark 80%"
    assert (events[2].queue_size, events[2].capacity, events[2].utilization) == (8, 10, 0.8)
    assert all(e.coordinator_id == "store-fb" and e.source == "store" for e in events)
    assert all(later.supersedes(earlier) for earlier, later in pairwise(events))


async def test_heartbeats_republish_the_state_with_the_same_seq(
    make_coordinator: Make, kit: SimpleNamespace, recording_publisher: Any
) -> None:
    coordinator = await make_coordinator(heartbeat_interval=0.005)
    await kit.eventually(lambda: len(recording_publisher.events) >= 4, what="heartbeats")
    events = recording_publisher.events[:4]
    assert {e.seq for e in events} == {1}
    assert all(later.supersedes(earlier) for earlier, later in pairwise(events))
    assert all(later.ts > earlier.ts for earlier, later in pairwise(events))
    await coordinator.submit_many(kit.trades(3))
    await kit.eventually(lambda: coordinator.stats().written == 3, what="the write")


async def test_a_failing_publisher_never_breaks_writes(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, recording_publisher: Any
) -> None:
    recording_publisher.fail = True
    coordinator = await make_coordinator(capacity=10, heartbeat_interval=0.005)
    await coordinator.submit_many(kit.trades(40))
    await kit.eventually(lambda: coordinator.stats().publish_errors >= 3, what="errors")
    await coordinator.stop()
    stats = coordinator.stats()
    assert stats.written == 40
    assert stats.publish_errors >= 3


async def test_a_hanging_publisher_times_out_and_stop_still_returns(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, recording_publisher: Any
) -> None:
    recording_publisher.hang = True
    coordinator = await make_coordinator(capacity=10, publish_timeout=0.01)
    await coordinator.submit_many(kit.trades(25))
    await asyncio.wait_for(coordinator.stop(), scaled(10))
    assert coordinator.stats().written == 25
    assert coordinator.stats().publish_errors >= 1


# -- the accounting invariant ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("with_dlq", [True, False])
async def test_every_accepted_record_is_accounted_for_under_random_failures(
    seed: int,
    with_dlq: bool,
    make_coordinator: Make,
    fake_writer: Any,
    kit: SimpleNamespace,
    tmp_path: Path,
) -> None:
    rng = random.Random(seed)
    errors: list[Callable[[], BaseException]] = [
        lambda: TransientBackendError("timeout"),
        lambda: PermanentBackendError("bad"),
        lambda: kit.WriterCrashError("bug"),
    ]

    def sometimes_fail(records: Sequence[Record]) -> BaseException | None:
        return rng.choice(errors)() if rng.random() < 0.3 else None

    fake_writer.rule = sometimes_fail
    dlq = FileDeadLetterStore(tmp_path / f"dlq-{seed}.ndjson") if with_dlq else None
    overflow = rng.choice(["block", "drop_oldest", "error"])
    coordinator = await make_coordinator(
        capacity=rng.randint(5, 40), workers=rng.randint(1, 3), batch_size=rng.randint(1, 8),
        overflow=overflow, dead_letters=dlq, retry=kit.fast_retry(rng.randint(1, 3)),
        breaker=CircuitBreaker(failure_threshold=3, reset_timeout=0.001),
    )  # fmt: skip
    submitted: list[Record] = []
    records = kit.trades(300)
    position = 0
    while position < len(records):
        size = rng.randint(1, 12)
        batch = records[position : position + size]
        position += size
        try:
            await coordinator.submit_many(batch)
        except QueueFullError:
            await asyncio.sleep(0.001)
            continue
        submitted.extend(batch)
        assert_accounted(coordinator.stats())
        if rng.random() < 0.2:
            await asyncio.sleep(0)
    drain = rng.random() < 0.7
    await asyncio.wait_for(coordinator.stop(drain=drain), scaled(30))

    stats = coordinator.stats()
    assert_accounted(stats)
    assert stats.queue_size == stats.in_flight == 0
    assert stats.accepted == len(submitted)
    assert stats.accepted == stats.written + stats.dead_lettered + stats.dropped + stats.failed
    assert Counter(fake_writer.written) <= Counter(submitted)
    assert len(fake_writer.written) == stats.written
    if dlq is not None:
        assert stats.failed == 0
        kept = await dead_lettered(dlq)
        assert len(kept) == stats.dead_lettered
        assert Counter(fake_writer.written) + Counter(kept) <= Counter(submitted)
    if overflow != "drop_oldest" and dlq is not None:  # nothing is lost at all
        assert Counter(fake_writer.written) + Counter(kept) == Counter(submitted)


async def test_with_a_healthy_writer_everything_accepted_is_written(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    rng = random.Random(42)
    coordinator = await make_coordinator(capacity=16, workers=3, batch_size=5)
    records = kit.mixed(400)

    async def produce(part: list[Record]) -> None:
        for start in range(0, len(part), 7):
            await coordinator.submit_many(part[start : start + 7])
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    await asyncio.gather(*(produce(records[i::4]) for i in range(4)))
    await coordinator.stop(drain=True)
    stats = coordinator.stats()
    assert stats.written == stats.accepted == 400
    assert bag(fake_writer.written) == bag(records)


def _one(symbol: str = "AAPL") -> Record:
    from market_data_core.testing import make_trade

    return make_trade(symbol=symbol)

"""What the coordinator tells about itself: a snapshot of its counters and its health
components (``write_queue``, ``workers``; the ``circuit_breaker`` tells its own)."""

from __future__ import annotations

from market_data_core import BackpressureLevel, HealthComponent, HealthState
from market_data_store.coordinator.settings import CoordinatorState
from market_data_store.coordinator.stats import CoordinatorStats, Counters

__all__ = ["queue_health", "snapshot", "workers_health"]


def snapshot(
    counters: Counters,
    *,
    queue_size: int,
    in_flight: int,
    capacity: int,
    level: BackpressureLevel,
    publish_errors: int,
    state: CoordinatorState,
) -> CoordinatorStats:
    """The counters and the queue as ``CoordinatorStats``."""
    return CoordinatorStats(
        accepted=counters.accepted,
        written=counters.written,
        failed=counters.failed,
        dead_lettered=counters.dead_lettered,
        dropped=counters.dropped,
        retries=counters.retries,
        worker_restarts=counters.restarts,
        queue_size=queue_size,
        in_flight=in_flight,
        capacity=capacity,
        level=level,
        batches=counters.batches,
        publish_errors=publish_errors,
        state=state,
        outage_rounds=counters.outage_rounds,
        refused=counters.refused,
        isolations=counters.isolations,
    )


def queue_health(
    counters: Counters,
    *,
    state: CoordinatorState,
    level: BackpressureLevel,
    queue_size: int,
    capacity: int,
) -> HealthComponent:
    """``write_queue``: unhealthy unless running, degraded at ``hard`` backpressure."""
    if state is not CoordinatorState.RUNNING:
        health = HealthState.UNHEALTHY
    elif level is BackpressureLevel.HARD:
        health = HealthState.DEGRADED
    else:
        health = HealthState.HEALTHY
    return HealthComponent(
        name="write_queue",
        state=health,
        details={
            "state": state.value,
            "level": level.value,
            "queue_size": queue_size,
            "capacity": capacity,
            "utilization": round(queue_size / capacity, 4),
            "dropped": counters.dropped,
            "dead_lettered": counters.dead_lettered,
            "failed": counters.failed,
        },
    )


def workers_health(
    counters: Counters, *, state: CoordinatorState, alive: int, expected: int
) -> HealthComponent:
    """``workers``: healthy when all are alive, degraded while one is being restarted,
    unhealthy when none is (or not running)."""
    if state is not CoordinatorState.RUNNING or alive == 0:
        health = HealthState.UNHEALTHY
    elif alive < expected:
        health = HealthState.DEGRADED
    else:
        health = HealthState.HEALTHY
    return HealthComponent(
        name="workers",
        state=health,
        details={"alive": alive, "expected": expected, "restarts": counters.restarts},
    )

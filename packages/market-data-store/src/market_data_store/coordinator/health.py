"""What the coordinator tells about itself: a snapshot of its counters and its health
components (``write_queue``, ``workers``, ``circuit_breaker``)."""

from __future__ import annotations

from market_data_core import BackpressureLevel, HealthComponent, HealthState
from market_data_store.coordinator.admission import Admission
from market_data_store.coordinator.settings import CoordinatorState
from market_data_store.coordinator.stats import CoordinatorStats

__all__ = ["Observation"]


class Observation(Admission):
    """``stats()`` and ``health()``."""

    def stats(self) -> CoordinatorStats:
        """A snapshot of the counters and the queue."""
        counters = self._counters
        in_flight = sum(held.size for held in self._held.values()) + self._salvaging
        return CoordinatorStats(
            accepted=counters.accepted,
            written=counters.written,
            failed=counters.failed,
            dead_lettered=counters.dead_lettered,
            dropped=counters.dropped,
            retries=counters.retries,
            worker_restarts=counters.restarts,
            queue_size=len(self._queue),
            in_flight=in_flight,
            capacity=self.capacity,
            level=self.level,
            batches=counters.batches,
            publish_errors=self._emitter.publish_errors,
            state=self._state,
            outage_rounds=counters.outage_rounds,
            refused=counters.refused,
            isolations=counters.isolations,
        )

    def health(self) -> list[HealthComponent]:
        """``write_queue``, ``workers`` and ``circuit_breaker``.

        write_queue: unhealthy unless running, degraded at ``hard`` backpressure.
        workers: healthy when all are alive, degraded while one is being restarted,
        unhealthy when none is (or not running)."""
        return [self._queue_health(), self._workers_health(), self.breaker.health()]

    def _queue_health(self) -> HealthComponent:
        if self._state is not CoordinatorState.RUNNING:
            state = HealthState.UNHEALTHY
        elif self.level is BackpressureLevel.HARD:
            state = HealthState.DEGRADED
        else:
            state = HealthState.HEALTHY
        size = len(self._queue)
        return HealthComponent(
            name="write_queue",
            state=state,
            details={
                "state": self._state.value,
                "level": self.level.value,
                "queue_size": size,
                "capacity": self.capacity,
                "utilization": round(size / self.capacity, 4),
                "dropped": self._counters.dropped,
                "dead_lettered": self._counters.dead_lettered,
                "failed": self._counters.failed,
            },
        )

    def _workers_health(self) -> HealthComponent:
        alive = sum(not task.done() for task in self._workers.values())
        if self._state is not CoordinatorState.RUNNING or alive == 0:
            state = HealthState.UNHEALTHY
        elif alive < self._worker_count:
            state = HealthState.DEGRADED
        else:
            state = HealthState.HEALTHY
        return HealthComponent(
            name="workers",
            state=state,
            details={
                "alive": alive,
                "expected": self._worker_count,
                "restarts": self._counters.restarts,
            },
        )

"""Prometheus metrics of the store service, on an injected registry.

Counters and gauges of the write path are read from the coordinator's stats at scrape
time (one source of truth); HTTP metrics are counted by the routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from market_data_core import BackpressureLevel, HealthState

__all__ = ["StoreMetrics"]

_LEVELS = {BackpressureLevel.OK: 0, BackpressureLevel.SOFT: 1, BackpressureLevel.HARD: 2}
_STATES = {HealthState.HEALTHY: 0, HealthState.DEGRADED: 1, HealthState.UNHEALTHY: 2}


class StoreMetrics:
    """The service's metrics; ``stats`` returns the coordinator's current stats."""

    def __init__(
        self,
        registry: CollectorRegistry,
        stats: Callable[[], Any],
        conflicts: Callable[[], int] = lambda: 0,
    ) -> None:
        self.conflicts = conflicts
        """Keys whose versions tied (equal as_of and revision, other values) so far."""
        self.registry = registry
        self.requests = Counter(
            "mds_http_requests_total",
            "HTTP requests by route and status code.",
            ["route", "status"],
            registry=registry,
        )
        self.records = Counter(
            "mds_ingest_records_total",
            "Records accepted by the ingest routes, by table.",
            ["table"],
            registry=registry,
        )
        self.audit_suppressed = Counter(
            "mds_audit_suppressed_total",
            "Refused admin calls left out of the audit log (a burst of one client: its next"
            " audit record counts them).",
            registry=registry,
        )
        self.rejected = Counter(
            "mds_ingest_rejected_total",
            "Ingest requests refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "mds_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            registry=registry,
        )
        self.write_seconds = Histogram(
            "mds_write_duration_seconds",
            "Time of one batch write attempt to the database (failed attempts included).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.readiness: HealthState = HealthState.HEALTHY
        registry.register(_CoordinatorCollector(stats, self))


class _CoordinatorCollector(Collector):
    def __init__(self, stats: Callable[[], Any], metrics: StoreMetrics) -> None:
        self._stats, self._metrics = stats, metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self._stats()
        yield _gauge("mds_write_queue_size", "Records waiting in the write queue.", s.queue_size)
        yield _gauge("mds_write_queue_capacity", "Capacity of the write queue.", s.capacity)
        yield _gauge(
            "mds_backpressure_level", "Backpressure level: 0 ok, 1 soft, 2 hard.", _LEVELS[s.level]
        )
        yield _gauge(
            "mds_readiness_state",
            "Readiness at the last /readyz: 0 healthy, 1 degraded, 2 unhealthy.",
            _STATES[self._metrics.readiness],
        )
        for name, doc, value in [
            ("mds_records_accepted_total", "Records accepted by the coordinator.", s.accepted),
            ("mds_records_written_total", "Records written to the database.", s.written),
            (
                "mds_records_dead_lettered_total",
                "Records sent to the dead-letter store.",
                s.dead_lettered,
            ),
            ("mds_records_dropped_total", "Records dropped by the overflow strategy.", s.dropped),
            (
                "mds_records_failed_total",
                "Records that failed with no dead-letter store.",
                s.failed,
            ),
            (
                "mds_records_refused_total",
                "Records the database refused as bad data, isolated from their batch.",
                s.refused,
            ),
            ("mds_write_retries_total", "Retried batch writes.", s.retries),
            ("mds_worker_restarts_total", "Crashed write workers restarted.", s.worker_restarts),
            (
                "mds_batches_written_total",
                "Batches settled: each of their records written, dead-lettered or failed.",
                s.batches,
            ),
            (
                "mds_version_conflicts_total",
                "Keys written with a version equal to the stored one (or another of the batch)"
                " but other values: the greater values were kept.",
                self._metrics.conflicts(),
            ),
        ]:
            family = CounterMetricFamily(name.removesuffix("_total"), doc)
            family.add_metric([], value)
            yield family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family

"""Prometheus metrics of the pipeline runtime, on an injected ``CollectorRegistry``.

Labels are bounded: ``mode`` (dag|classic), ``job`` (configured jobs), ``node`` (the nodes of
those graphs), ``provider`` and ``reason`` (a fixed set); never symbols or record values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["PipelineMetrics"]


class PipelineMetrics:
    """Every metric the runtime exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runtime_up = Gauge("runtime_up", "1 while the runtime runs.", ["mode"], registry=r)
        self.jobs_running = Gauge(
            "runtime_jobs_running", "Pipeline jobs running.", ["mode"], registry=r
        )
        self.items_in = Counter(
            "pipeline_node_items_in_total", "Records a node received.", ["job", "node"], registry=r
        )
        self.items_out = Counter(
            "pipeline_node_items_out_total", "Records a node emitted.", ["job", "node"], registry=r
        )
        self.channel_depth = Gauge(
            "pipeline_channel_depth",
            "Batches waiting in front of a node.",
            ["job", "node"],
            registry=r,
        )
        self.latency = Histogram(
            "pipeline_node_processing_seconds",
            "Time a node spent on one batch.",
            ["job", "node"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.late = Counter(
            "pipeline_late_records_total",
            "Records that arrived after their window closed (sent to the late output).",
            ["job", "node"],
            registry=r,
        )
        self.scale = Gauge(
            "pipeline_backpressure_scale",
            "Fraction of the full rate a provider may use (0 = paused).",
            ["provider"],
            registry=r,
        )
        self.pauses = Counter(
            "pipeline_backpressure_pauses_total",
            "Times a provider paused under hard backpressure.",
            ["provider"],
            registry=r,
        )

        self.redis_reconnects = Counter(
            "pipeline_redis_reconnects_total",
            "Times a redis_stream node got its Redis server back after an outage.",
            ["job", "node"],
            registry=r,
        )
        self.redis_losses = Counter(
            "pipeline_redis_stream_losses_total",
            "Times a redis_stream provider found that Redis lost stream entries, by reason"
            " (group_vanished, counter_back, stream_back, group_back, stream_after,"
            " trimmed).",
            ["job", "node", "reason"],
            registry=r,
        )

    def observe_batch(self, job: str, node: str, rows: int, seconds: float) -> None:
        self.items_in.labels(job=job, node=node).inc(rows)
        self.latency.labels(job=job, node=node).observe(seconds)

"""Telemetry contracts: backpressure feedback, rate adjustments and metric points.

A write coordinator publishes ``FeedbackEvent``s when its queue crosses a watermark and
periodically as a heartbeat. Consumers (pipelines, the orchestrator) turn them into a
``RateAdjustment`` for their providers: ``ok`` -> full rate, ``soft`` -> reduced,
``hard`` -> paused. See docs/architecture.md, "The loops".
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import Field, StringConstraints, model_validator

from market_data_core._base import PeerModel
from market_data_core._types import Identifier, UtcDatetime

__all__ = [
    "BackpressureLevel",
    "FeedbackEvent",
    "MetricKind",
    "MetricPoint",
    "RateAdjustment",
]

_Reason = Annotated[str, StringConstraints(max_length=512)]


class BackpressureLevel(StrEnum):
    """How full a write coordinator's queue is: ``ok`` < ``soft`` < ``hard``."""

    OK = "ok"
    SOFT = "soft"
    HARD = "hard"

    @property
    def severity(self) -> int:
        return _LEVEL_SEVERITY[self]

    @property
    def default_scale(self) -> float:
        """The rate a producer should run at on this level: 1.0, 0.5 or 0.0 (paused)."""
        return _LEVEL_SCALE[self]

    @classmethod
    def worst(cls, levels: Any) -> BackpressureLevel:
        """The most severe of ``levels`` (``ok`` when there are none)."""
        return max(levels, key=_LEVEL_SEVERITY.__getitem__, default=cls.OK)


_LEVEL_SEVERITY = {BackpressureLevel.OK: 0, BackpressureLevel.SOFT: 1, BackpressureLevel.HARD: 2}
_LEVEL_SCALE = {BackpressureLevel.OK: 1.0, BackpressureLevel.SOFT: 0.5, BackpressureLevel.HARD: 0.0}


class FeedbackEvent(PeerModel):
    """The state of one write coordinator's queue, as published on the feedback transport.

    ``seq`` increases with every state change of a coordinator; a heartbeat republishes the
    latest event with the same ``seq`` and a newer ``ts``. Consumers drop events whose
    ``seq`` is lower than one they have seen (stale) and treat silence longer than their
    TTL as *unknown*. ``utilization`` is ``queue_size / capacity`` when not given.
    """

    coordinator_id: Identifier
    queue_size: Annotated[int, Field(ge=0)]
    capacity: Annotated[int, Field(gt=0)]
    level: BackpressureLevel
    source: Identifier = "store"
    ts: UtcDatetime
    seq: Annotated[int, Field(ge=0)]
    reason: _Reason | None = None
    utilization: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]

    @model_validator(mode="before")
    @classmethod
    def _default_utilization(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("utilization") is None:
            size, capacity = data.get("queue_size"), data.get("capacity")
            if isinstance(size, int) and isinstance(capacity, int) and capacity > 0:
                return {**data, "utilization": min(size / capacity, 1.0)}
        return data

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.queue_size > self.capacity:
            msg = f"queue_size ({self.queue_size}) exceeds capacity ({self.capacity})"
            raise ValueError(msg)
        return self

    def supersedes(self, other: FeedbackEvent) -> bool:
        """True when this event replaces ``other`` from the same coordinator: a higher
        ``seq``, or the same ``seq`` with a newer ``ts`` (a heartbeat)."""
        return self.seq > other.seq or (self.seq == other.seq and self.ts > other.ts)


class RateAdjustment(PeerModel):
    """A provider's new rate, as a fraction of its full rate (``0`` = paused)."""

    provider: Identifier
    scale: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    reason: _Reason
    ts: UtcDatetime
    level: BackpressureLevel | None = Field(
        default=None, description="The backpressure level that caused it, when one did."
    )
    coordinator_id: Identifier | None = None

    @property
    def paused(self) -> bool:
        return self.scale == 0

    def supersedes(self, other: RateAdjustment) -> bool:
        """True unless ``other`` (for the same provider) is newer."""
        return self.ts >= other.ts


class MetricKind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class MetricPoint(PeerModel):
    """One sample of a metric, named and labelled as Prometheus requires."""

    name: Annotated[str, StringConstraints(pattern=_METRIC_NAME.pattern, max_length=200)]
    value: Annotated[float, Field(allow_inf_nan=False)]
    kind: MetricKind = MetricKind.GAUGE
    labels: dict[Annotated[str, StringConstraints(pattern=_LABEL_NAME)], str] = Field(
        default_factory=dict
    )
    ts: UtcDatetime

    @model_validator(mode="after")
    def _counter_suffix(self) -> Self:
        if self.kind is MetricKind.COUNTER and not self.name.endswith("_total"):
            msg = f"counter name {self.name!r} must end in '_total'"
            raise ValueError(msg)
        if self.kind is MetricKind.COUNTER and self.value < 0:
            msg = f"counter {self.name!r} cannot be negative ({self.value})"
            raise ValueError(msg)
        return self

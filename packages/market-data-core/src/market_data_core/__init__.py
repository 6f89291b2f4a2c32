"""market-data-core: the shared contracts of the market-data platform.

Pure data and interfaces (pydantic v2, frozen models, UTC timestamps). Importing it imports
pydantic and nothing else outside the standard library; the Redis feedback transport lives
in ``market_data_core.transports.redis`` behind the ``redis`` extra.

>>> from market_data_core import Bar, Timeframe
>>> Timeframe.parse("5m").seconds
300

The names below are imported on first use (PEP 562, ``market_data_core.lazy``): a process
pays only for the contracts it touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_core.lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_core._types import (
        MAX_TIMESTAMP,
        MIN_TIMESTAMP,
        SYMBOL_PATTERN,
        Symbol,
        Text,
        TextDatetime,
        UtcDatetime,
        check_text,
        clamp_utc,
    )
    from market_data_core._versioned import Reason
    from market_data_core.bars import Bar
    from market_data_core.control import (
        AuditEnvelope,
        AuditOutcome,
        ControlAction,
        ControlResult,
        ControlStatus,
    )
    from market_data_core.events import EventEnvelope, EventMeta, Track
    from market_data_core.exceptions import (
        ConfigurationError,
        ContractError,
        MarketDataError,
        TimeframeError,
        TransportError,
    )
    from market_data_core.federation import (
        ClusterId,
        ClusterTopology,
        FederationDirectory,
        NodeId,
        NodeRole,
        NodeStatus,
        Region,
    )
    from market_data_core.health import (
        HealthComponent,
        HealthState,
        HealthStatus,
        Probe,
        ProbeKind,
        worst_of,
    )
    from market_data_core.instruments import AssetClass, Instrument
    from market_data_core.job_protocol import JobCommand, JobEvent, RunSummary
    from market_data_core.problems import PROBLEM_MEDIA_TYPE, Problem, ProblemItem
    from market_data_core.protocols import (
        FeedbackPublisher,
        FeedbackSubscriber,
        PipelineRunner,
        RateController,
        Sink,
        Source,
        TelemetryMessage,
        Transform,
    )
    from market_data_core.signals import Signal
    from market_data_core.telemetry import (
        BackpressureLevel,
        FeedbackEvent,
        MetricKind,
        MetricPoint,
        RateAdjustment,
    )
    from market_data_core.ticks import Quote, Trade, TradeSide
    from market_data_core.timeframe import Timeframe
    from market_data_core.timestamps import (
        NanoDatetime,
        RangeDatetime,
        UtcTimestamp,
        from_ns,
        parse_timestamp,
        to_ns,
    )
    from market_data_core.transports import FeedbackTracker, InMemoryFeedbackBus
    from market_data_core.version import CONTRACT_VERSION, __version__

_LAZY: dict[str, tuple[str, ...]] = {
    "_types": (
        "MAX_TIMESTAMP",
        "MIN_TIMESTAMP",
        "SYMBOL_PATTERN",
        "Symbol",
        "Text",
        "TextDatetime",
        "UtcDatetime",
        "check_text",
        "clamp_utc",
    ),
    "_versioned": ("Reason",),
    "bars": ("Bar",),
    "control": (
        "AuditEnvelope",
        "AuditOutcome",
        "ControlAction",
        "ControlResult",
        "ControlStatus",
    ),
    "events": (
        "EventEnvelope",
        "EventMeta",
        "Track",
    ),
    "exceptions": (
        "ConfigurationError",
        "ContractError",
        "MarketDataError",
        "TimeframeError",
        "TransportError",
    ),
    "federation": (
        "ClusterId",
        "ClusterTopology",
        "FederationDirectory",
        "NodeId",
        "NodeRole",
        "NodeStatus",
        "Region",
    ),
    "health": (
        "HealthComponent",
        "HealthState",
        "HealthStatus",
        "Probe",
        "ProbeKind",
        "worst_of",
    ),
    "instruments": (
        "AssetClass",
        "Instrument",
    ),
    "job_protocol": (
        "JobCommand",
        "JobEvent",
        "RunSummary",
    ),
    "problems": (
        "PROBLEM_MEDIA_TYPE",
        "Problem",
        "ProblemItem",
    ),
    "protocols": (
        "FeedbackPublisher",
        "FeedbackSubscriber",
        "PipelineRunner",
        "RateController",
        "Sink",
        "Source",
        "TelemetryMessage",
        "Transform",
    ),
    "signals": ("Signal",),
    "telemetry": (
        "BackpressureLevel",
        "FeedbackEvent",
        "MetricKind",
        "MetricPoint",
        "RateAdjustment",
    ),
    "ticks": (
        "Quote",
        "Trade",
        "TradeSide",
    ),
    "timeframe": ("Timeframe",),
    "timestamps": (
        "NanoDatetime",
        "RangeDatetime",
        "UtcTimestamp",
        "from_ns",
        "parse_timestamp",
        "to_ns",
    ),
    "transports": (
        "FeedbackTracker",
        "InMemoryFeedbackBus",
    ),
    "version": ("CONTRACT_VERSION",),
}
"""The module of each public name (imported from there on first access)."""

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), version_of="market-data-core")

__all__ = [
    "CONTRACT_VERSION",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "PROBLEM_MEDIA_TYPE",
    "SYMBOL_PATTERN",
    "AssetClass",
    "AuditEnvelope",
    "AuditOutcome",
    "BackpressureLevel",
    "Bar",
    "ClusterId",
    "ClusterTopology",
    "ConfigurationError",
    "ContractError",
    "ControlAction",
    "ControlResult",
    "ControlStatus",
    "EventEnvelope",
    "EventMeta",
    "FederationDirectory",
    "FeedbackEvent",
    "FeedbackPublisher",
    "FeedbackSubscriber",
    "FeedbackTracker",
    "HealthComponent",
    "HealthState",
    "HealthStatus",
    "InMemoryFeedbackBus",
    "Instrument",
    "JobCommand",
    "JobEvent",
    "MarketDataError",
    "MetricKind",
    "MetricPoint",
    "NanoDatetime",
    "NodeId",
    "NodeRole",
    "NodeStatus",
    "PipelineRunner",
    "Probe",
    "ProbeKind",
    "Problem",
    "ProblemItem",
    "Quote",
    "RangeDatetime",
    "RateAdjustment",
    "RateController",
    "Reason",
    "Region",
    "RunSummary",
    "Signal",
    "Sink",
    "Source",
    "Symbol",
    "TelemetryMessage",
    "Text",
    "TextDatetime",
    "Timeframe",
    "TimeframeError",
    "Track",
    "Trade",
    "TradeSide",
    "Transform",
    "TransportError",
    "UtcDatetime",
    "UtcTimestamp",
    "__version__",
    "check_text",
    "clamp_utc",
    "from_ns",
    "parse_timestamp",
    "to_ns",
    "worst_of",
]

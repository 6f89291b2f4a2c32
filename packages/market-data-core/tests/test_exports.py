"""The public API is what ``__all__`` says: pinned so that a removal is a conscious change."""

import market_data_core

EXPECTED = {
    "CONTRACT_VERSION", "MAX_TIMESTAMP", "MIN_TIMESTAMP", "PROBLEM_MEDIA_TYPE", "SYMBOL_PATTERN", "AssetClass", "AuditEnvelope", "AuditOutcome", "BackpressureLevel",
    "Bar", "ClusterId", "ClusterTopology", "ConfigurationError", "ContractError",
    "ControlAction", "ControlResult", "ControlStatus", "EventEnvelope", "EventMeta",
    "FederationDirectory", "FeedbackEvent", "FeedbackPublisher", "FeedbackSubscriber",
    "FeedbackTracker", "HealthComponent", "HealthState", "HealthStatus", "InMemoryFeedbackBus",
    "Instrument", "JobCommand", "JobEvent", "MarketDataError", "MetricKind", "MetricPoint", "NodeId", "NodeRole",
    "NodeStatus", "PipelineRunner", "Probe", "ProbeKind", "Problem", "ProblemItem", "Quote", "RateAdjustment", "RunSummary",
    "RateController", "Region", "Signal", "Sink", "Source", "Symbol", "TelemetryMessage", "Text", "Timeframe",
    "TimeframeError", "Trade", "TradeSide", "Track", "Transform", "TransportError", "UtcDatetime",
    "__version__", "check_text", "clamp_utc", "worst_of",
    "NanoDatetime", "UtcTimestamp", "Reason", "from_ns", "parse_timestamp", "to_ns",
    "TextDatetime", "RangeDatetime",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(market_data_core.__all__) == EXPECTED


def test_every_export_exists() -> None:
    missing = [name for name in market_data_core.__all__ if not hasattr(market_data_core, name)]
    assert missing == []

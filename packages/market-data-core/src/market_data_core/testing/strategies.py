"""Hypothesis strategies for every contract (needs ``hypothesis``; install it in tests).

They generate only valid models, over the whole space the validators allow: timestamps in
any UTC offset, prices across magnitudes, every enum member, optional fields set or not.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from market_data_core.bars import Bar
from market_data_core.control import (
    AuditEnvelope,
    AuditOutcome,
    ControlAction,
    ControlResult,
    ControlStatus,
)
from market_data_core.events import EventEnvelope, EventMeta, Track
from market_data_core.federation import ClusterTopology, NodeRole, NodeStatus
from market_data_core.health import HealthComponent, HealthState, HealthStatus, Probe, ProbeKind
from market_data_core.instruments import AssetClass, Instrument
from market_data_core.job_protocol import (
    DrainReport,
    JobCommand,
    JobControlAck,
    JobError,
    JobEvent,
    JobProgress,
    JobStarted,
    NodeProgress,
    NodeSummary,
    NotFlushed,
    RunSummary,
    StoreReport,
)
from market_data_core.problems import Problem, ProblemItem
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
from market_data_core.timestamps import NanoDatetime

__all__ = [
    "STRATEGIES",
    "aware_datetimes",
    "bars",
    "feedback_events",
    "health_statuses",
    "identifiers",
    "nano_datetimes",
    "prices",
    "quotes",
    "symbols",
    "timeframes",
    "trades",
]

_DAY = 86_400
_DIVISORS = [d for d in range(1, _DAY + 1) if _DAY % d == 0]

symbols = st.from_regex(r"\A[A-Z0-9][A-Z0-9./:=\-]{0,15}\Z")
identifiers = st.from_regex(r"\A[a-z0-9][a-z0-9._\-]{0,30}\Z")
texts = st.text(st.characters(codec="utf-8"), max_size=40)
stored_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
"""Text that every store keeps (``market_data_core.Text``: no NUL)."""
prices = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
sizes = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)
timeframes = st.sampled_from(_DIVISORS).map(Timeframe)
_offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def aware_datetimes() -> st.SearchStrategy[datetime]:
    """Aware datetimes between 1990 and 2100, in any whole-minute UTC offset."""
    return st.datetimes(
        min_value=datetime(1990, 1, 2),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=datetime(2099, 12, 30),  # noqa: DTZ001
        timezones=_offsets,
    )


def nano_datetimes() -> st.SearchStrategy[datetime]:
    """Aware datetimes (as ``aware_datetimes``), a third of them with nanoseconds."""
    return st.builds(
        NanoDatetime.combine_ns,
        aware_datetimes(),
        st.sampled_from([0, 0, 1, 999]) | st.integers(0, 999),
    )


reasons = st.none() | st.sampled_from(["late", "backfill", "correction"])
revisions = st.integers(0, 2**63 - 1) | st.integers(0, 10)


def trades() -> st.SearchStrategy[Trade]:
    return st.builds(
        Trade,
        symbol=symbols,
        ts=nano_datetimes(),
        price=prices,
        size=sizes,
        exchange=st.none() | st.sampled_from(["XNAS", "BINANCE", "CME"]),
        conditions=st.lists(st.from_regex(r"\A[A-Z]{1,4}\Z"), max_size=3).map(tuple),
        trade_id=st.none() | st.from_regex(r"\A[0-9]{1,12}\Z"),
        side=st.none() | st.sampled_from(TradeSide),
        received_at=st.none() | nano_datetimes(),
        ordinal=st.none() | st.integers(0, 2**31 - 1),
        as_of=st.none() | nano_datetimes(),
        revision=revisions,
        reason=reasons,
    )


@st.composite
def quotes(draw: st.DrawFn) -> Quote:
    bid = draw(prices)
    ask = draw(st.floats(min_value=bid, max_value=max(bid, 0) + 1e6, allow_nan=False))
    return Quote(
        symbol=draw(symbols),
        ts=draw(nano_datetimes()),
        bid=bid,
        ask=ask,
        bid_size=draw(sizes),
        ask_size=draw(sizes),
        exchange=draw(st.none() | st.sampled_from(["XNAS", "BINANCE", "CME"])),
        sequence=draw(st.none() | st.integers(0, 2**63 - 1)),
        received_at=draw(st.none() | nano_datetimes()),
        ordinal=draw(st.none() | st.integers(0, 2**31 - 1)),
        as_of=draw(st.none() | nano_datetimes()),
        revision=draw(revisions),
        reason=draw(reasons),
    )


@st.composite
def bars(draw: st.DrawFn) -> Bar:
    timeframe = draw(timeframes)
    low = draw(prices)
    high = draw(st.floats(min_value=low, max_value=low + 1e6, allow_nan=False))
    inside = st.floats(min_value=low, max_value=high, allow_nan=False)
    return Bar(
        source=draw(identifiers),
        symbol=draw(symbols),
        timeframe=timeframe,
        start=timeframe.floor(draw(aware_datetimes())),
        open=draw(inside),
        high=high,
        low=low,
        close=draw(inside),
        volume=draw(sizes),
        trade_count=draw(st.none() | st.integers(0, 10**9)),
        vwap=draw(st.none() | inside),
        as_of=draw(st.none() | nano_datetimes()),
        revision=draw(revisions),
        reason=draw(reasons),
    )


@st.composite
def feedback_events(draw: st.DrawFn) -> FeedbackEvent:
    capacity = draw(st.integers(1, 10**7))
    queue_size = draw(st.integers(0, capacity))
    return FeedbackEvent(
        coordinator_id=draw(identifiers),
        queue_size=queue_size,
        capacity=capacity,
        utilization=queue_size / capacity,
        level=draw(st.sampled_from(BackpressureLevel)),
        source=draw(identifiers),
        ts=draw(aware_datetimes()),
        seq=draw(st.integers(0, 2**53)),
        reason=draw(st.none() | texts),
    )


def health_components() -> st.SearchStrategy[HealthComponent]:
    return st.builds(
        HealthComponent,
        name=identifiers,
        state=st.sampled_from(HealthState),
        required=st.booleans(),
        details=st.dictionaries(
            st.from_regex(r"\A[a-z_]{1,12}\Z"),
            st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts,
            max_size=3,
        ),
    )


@st.composite
def health_statuses(draw: st.DrawFn) -> HealthStatus:
    components = draw(st.lists(health_components(), max_size=5, unique_by=lambda c: c.name))
    return HealthStatus.from_components(
        draw(identifiers), components, version="1.2.3", ts=draw(aware_datetimes())
    )


def _node_statuses() -> st.SearchStrategy[NodeStatus]:
    return st.builds(
        NodeStatus,
        node_id=identifiers,
        role=st.sampled_from(NodeRole),
        region=st.sampled_from(["local", "eu-west-1", "us-east-2"]),
        url=st.none() | st.just("http://127.0.0.1:8000"),
        state=st.sampled_from(HealthState),
        last_seen=st.none() | aware_datetimes(),
    )


_counts = st.integers(min_value=0, max_value=10**12)
_node_names = st.from_regex(r"\A[a-z][a-z0-9_]{0,11}\Z")
_RESERVED = {"type", "kind", "in", "out", "rows_in", "rows_out"}


@st.composite
def _node_summaries(draw: st.DrawFn) -> NodeSummary:
    counters = draw(
        st.dictionaries(_node_names.filter(lambda k: k not in _RESERVED), _counts, max_size=3)
    )
    fields: dict[str, Any] = {"in": draw(_counts), "out": draw(_counts), **counters}
    return NodeSummary(
        type=draw(_node_names),
        kind=draw(st.sampled_from(["provider", "operator", "sink"])),
        **fields,
    )


def _run_summaries() -> st.SearchStrategy[RunSummary]:
    seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False)
    not_flushed = st.builds(
        NotFlushed,
        channels=st.dictionaries(_node_names, _counts, max_size=2),
        cancelled=st.lists(_node_names, max_size=2),
        store=st.dictionaries(st.sampled_from(["dead_lettered", "dropped"]), _counts),
    )
    return st.builds(
        RunSummary,
        job=_node_names,
        mode=st.sampled_from(["dag", "classic"]),
        state=st.sampled_from(["completed", "stopped", "failed"]),
        seconds=seconds,
        nodes=st.dictionaries(_node_names, _node_summaries(), max_size=3),
        late=_counts,
        pauses=_counts,
        store=st.none()
        | st.builds(
            StoreReport,
            database=st.just("sqlite:///market_data.db"),
            tables=st.dictionaries(_node_names, st.tuples(_counts, _counts), max_size=2),
        ),
        drain=st.none()
        | st.builds(
            DrainReport,
            timeout=seconds,
            seconds=seconds,
            complete=st.booleans(),
            not_flushed=st.none() | not_flushed,
        ),
    )


def _job_events() -> st.SearchStrategy[JobEvent]:
    progress = st.builds(
        JobProgress,
        state=st.sampled_from(["running", "paused"]),
        nodes=st.dictionaries(
            _node_names,
            st.builds(lambda i, o: NodeProgress(**{"in": i, "out": o}), _counts, _counts),
            max_size=3,
        ),
        pauses=_counts,
    )
    started = st.builds(
        JobStarted,
        job=_node_names,
        pid=st.integers(1, 2**22),
        mode=st.sampled_from(["dag", "classic"]),
    )
    ack = st.builds(
        JobControlAck,
        id=st.none() | identifiers,
        result=st.builds(
            ControlResult,
            action=st.sampled_from(ControlAction),
            target=identifiers,
            status=st.sampled_from(ControlStatus),
            ts=aware_datetimes(),
        ),
    )
    error = st.builds(JobError, message=texts)
    return st.one_of(started, progress, ack, error, _run_summaries()).map(
        lambda event: JobEvent(root=event)
    )


STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    Instrument: st.builds(
        Instrument,
        symbol=symbols,
        asset_class=st.sampled_from(AssetClass),
        currency=st.none() | st.sampled_from(["USD", "EUR", "USDT", "JPY"]),
        tick_size=st.none() | st.floats(min_value=1e-8, max_value=100, allow_nan=False),
    ),
    Trade: trades(),
    Quote: quotes(),
    Bar: bars(),
    Signal: st.builds(
        Signal,
        source=identifiers,
        symbol=symbols,
        ts=aware_datetimes(),
        name=st.from_regex(r"\A[a-z_][a-z0-9_]{0,20}\Z"),
        value=prices,
        score=st.none() | unit,
        metadata=st.dictionaries(
            st.from_regex(r"\A[a-z]{1,8}\Z"),
            st.none() | st.booleans() | prices | stored_texts,
            max_size=3,
        ),
    ),
    FeedbackEvent: feedback_events(),
    RateAdjustment: st.builds(
        RateAdjustment,
        provider=identifiers,
        scale=unit,
        reason=texts,
        ts=aware_datetimes(),
        level=st.none() | st.sampled_from(BackpressureLevel),
    ),
    MetricPoint: st.builds(
        MetricPoint,
        name=st.from_regex(r"\A[a-z_][a-z0-9_]{0,20}\Z"),
        value=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
        kind=st.sampled_from([MetricKind.GAUGE, MetricKind.HISTOGRAM]),
        labels=st.dictionaries(st.from_regex(r"\A[a-z_]{1,8}\Z"), texts, max_size=3),
        ts=aware_datetimes(),
    ),
    HealthComponent: health_components(),
    HealthStatus: health_statuses(),
    Probe: st.builds(
        Probe,
        name=identifiers,
        kind=st.sampled_from(ProbeKind),
        url=st.just("http://127.0.0.1:8080/readyz"),
        interval_s=st.floats(min_value=0.01, max_value=60),
    ),
    ControlResult: st.builds(
        ControlResult,
        action=st.sampled_from(ControlAction),
        target=identifiers,
        status=st.sampled_from(ControlStatus),
        message=texts,
        ts=aware_datetimes(),
    ),
    AuditEnvelope: st.builds(
        AuditEnvelope,
        actor=st.from_regex(r"\A[a-z]{1,12}\Z"),
        role=st.none() | st.sampled_from(["viewer", "operator", "admin"]),
        action=st.sampled_from(["pause", "resume", "reload", "migrate"]),
        target=st.none() | identifiers,
        result=st.sampled_from(AuditOutcome),
        ts=aware_datetimes(),
    ),
    NodeStatus: _node_statuses(),
    ClusterTopology: st.builds(
        ClusterTopology,
        cluster_id=identifiers,
        nodes=st.lists(_node_statuses(), max_size=4, unique_by=lambda n: n.node_id).map(tuple),
        ts=aware_datetimes(),
    ),
    EventMeta: st.builds(
        EventMeta,
        schema_id=st.sampled_from(["market_data.bar/v1", "market_data.trade/v1"]),
        track=st.sampled_from(Track),
        headers=st.dictionaries(st.from_regex(r"\A[a-z\-]{1,10}\Z"), texts, max_size=2),
    ),
    EventEnvelope: st.builds(
        EventEnvelope[Bar],
        key=symbols,
        ts=aware_datetimes(),
        meta=st.builds(EventMeta, schema_id=st.just("market_data.bar/v1")),
        payload=bars(),
    ),
    Problem: st.builds(
        Problem.of,
        status=st.sampled_from([400, 401, 404, 409, 413, 415, 422, 429, 503]),
        detail=texts,
        errors=st.lists(
            st.builds(
                ProblemItem,
                loc=st.lists(st.integers(0, 10_000) | identifiers, max_size=3).map(tuple),
                msg=texts,
                type=identifiers,
            ),
            max_size=3,
        ).map(tuple),
        instance=st.none() | st.just("/v1/trades"),
    ),
    JobCommand: st.builds(
        JobCommand, action=st.sampled_from(ControlAction), id=st.none() | identifiers
    ),
    JobEvent: _job_events(),
    RunSummary: _run_summaries(),
}
"""A strategy for each contract in ``market_data_core.schemas.CONTRACTS``."""

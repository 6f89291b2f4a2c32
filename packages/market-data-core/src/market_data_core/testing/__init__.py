"""Factories for valid contracts, for the tests of every package and for users' own tests.

Each ``make_*`` returns a valid model with sensible defaults; pass keyword arguments to
override fields. ``random_walk_trades`` makes a reproducible stream for a symbol.
Hypothesis strategies live in ``market_data_core.testing.strategies`` (needs hypothesis);
real servers for integration tests in ``market_data_core.testing.servers``.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from market_data_core.bars import Bar
from market_data_core.control import AuditEnvelope, AuditOutcome
from market_data_core.federation import ClusterTopology, NodeRole, NodeStatus
from market_data_core.health import HealthComponent, HealthState, HealthStatus
from market_data_core.signals import Signal
from market_data_core.telemetry import BackpressureLevel, FeedbackEvent, RateAdjustment
from market_data_core.ticks import Quote, Trade
from market_data_core.timeframe import Timeframe

__all__ = [
    "AS_OF",
    "T0",
    "FakeClock",
    "make_audit",
    "make_bar",
    "make_feedback_event",
    "make_health_status",
    "make_quote",
    "make_rate_adjustment",
    "make_signal",
    "make_topology",
    "make_trade",
    "random_walk_trades",
]

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
"""A fixed, aligned instant used as the default timestamp (a US market open)."""
AS_OF = datetime(2024, 1, 3, tzinfo=UTC)
"""The version (``as_of``) the factories give market data: fixed, so what a store gives
back equals what was written. Pass ``as_of=`` (or ``revision=``) to make a newer version,
``as_of=None`` to let the store version a record with the time it receives it."""


def make_trade(**overrides: Any) -> Trade:
    fields: dict[str, Any] = {
        "symbol": "AAPL", "ts": T0, "price": 185.25, "size": 100.0, "ordinal": 0, "as_of": AS_OF
    }  # fmt: skip
    return Trade(**(fields | overrides))


def make_quote(**overrides: Any) -> Quote:
    fields: dict[str, Any] = {
        "symbol": "AAPL",
        "ts": T0,
        "bid": 185.24,
        "ask": 185.26,
        "bid_size": 300.0,
        "ask_size": 200.0,
        "ordinal": 0,
        "as_of": AS_OF,
    }
    return Quote(**(fields | overrides))


def make_bar(**overrides: Any) -> Bar:
    fields: dict[str, Any] = {
        "source": "test",
        "symbol": "AAPL",
        "timeframe": Timeframe.parse("1m"),
        "start": T0,
        "open": 185.0,
        "high": 185.9,
        "low": 184.8,
        "close": 185.5,
        "volume": 12_000.0,
        "trade_count": 87,
        "vwap": 185.31,
        "as_of": AS_OF,
    }
    return Bar(**(fields | overrides))


def make_signal(**overrides: Any) -> Signal:
    fields: dict[str, Any] = {
        "source": "test",
        "symbol": "AAPL",
        "ts": T0,
        "name": "momentum_5m",
        "value": 0.42,
        "score": 0.9,
        "as_of": AS_OF,
    }
    return Signal(**(fields | overrides))


def make_feedback_event(**overrides: Any) -> FeedbackEvent:
    fields: dict[str, Any] = {
        "coordinator_id": "store-1",
        "queue_size": 10,
        "capacity": 1000,
        "level": BackpressureLevel.OK,
        "ts": T0,
        "seq": 1,
    }
    return FeedbackEvent(**(fields | overrides))


def make_rate_adjustment(**overrides: Any) -> RateAdjustment:
    fields: dict[str, Any] = {
        "provider": "synthetic",
        "scale": 0.5,
        "reason": "store-1 soft backpressure",
        "ts": T0,
        "level": BackpressureLevel.SOFT,
        "coordinator_id": "store-1",
    }
    return RateAdjustment(**(fields | overrides))


def make_health_status(
    *states: HealthState, service: str = "store", **overrides: Any
) -> HealthStatus:
    """A status with one required component per given state (named ``c0``, ``c1``...)."""
    components = [HealthComponent(name=f"c{i}", state=s) for i, s in enumerate(states)]
    status = HealthStatus.from_components(service, components, version="0.1.0", ts=T0)
    return status.model_copy(update=overrides) if overrides else status


def make_audit(**overrides: Any) -> AuditEnvelope:
    fields: dict[str, Any] = {
        "actor": "alice",
        "role": "operator",
        "action": "pause",
        "target": "job-1",
        "result": AuditOutcome.ALLOWED,
        "ts": T0,
    }
    return AuditEnvelope(**(fields | overrides))


def make_topology(**overrides: Any) -> ClusterTopology:
    nodes = (
        NodeStatus(node_id="orch-1", role=NodeRole.ORCHESTRATOR, state=HealthState.HEALTHY),
        NodeStatus(node_id="store-1", role=NodeRole.STORE, state=HealthState.HEALTHY),
        NodeStatus(node_id="pipe-1", role=NodeRole.PIPELINE, state=HealthState.DEGRADED),
    )
    fields: dict[str, Any] = {"cluster_id": "local", "nodes": nodes, "ts": T0}
    return ClusterTopology(**(fields | overrides))


def random_walk_trades(
    symbol: str = "AAPL",
    count: int = 1000,
    *,
    start: datetime = T0,
    mean_gap: timedelta = timedelta(milliseconds=250),
    price: float = 100.0,
    seed: int = 0,
) -> list[Trade]:
    """``count`` trades of a seeded random walk, in event-time order (reproducible), each
    with its ordinal among the trades of its microsecond and the version ``AS_OF``."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    trades: list[Trade] = []
    ts = start
    gap_us = mean_gap / timedelta(microseconds=1)
    for _ in range(count):
        ts += timedelta(microseconds=int(rng.expovariate(1 / gap_us)))
        price = max(0.01, round(price + rng.gauss(0, 0.05), 2))
        size = float(rng.randint(1, 50) * 10)
        ordinal = trades[-1].ordinal + 1 if trades and trades[-1].ts == ts else 0  # type: ignore[operator]
        trades.append(
            Trade(symbol=symbol, ts=ts, price=price, size=size, ordinal=ordinal, as_of=AS_OF)
        )
    return trades


class FakeClock:
    """Monotonic seconds that move only when a test says so: ``clock.now = t`` or
    ``clock.advance(dt)``; pass the clock where a component takes ``clock=``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

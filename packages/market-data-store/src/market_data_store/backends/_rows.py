"""Conversions between core models and row tuples (private, shared by the backends)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from market_data_core import AuditEnvelope, Bar, Quote, Signal, Trade

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

BAR_COLUMNS = (
    "source", "symbol", "timeframe", "start", "open", "high", "low", "close",
    "volume", "trade_count", "vwap",
)  # fmt: skip
BAR_KEY = ("source", "symbol", "timeframe", "start")
TRADE_COLUMNS = ("symbol", "ts", "trade_id", "price", "size", "exchange", "side", "conditions")
TRADE_KEY = ("symbol", "ts", "trade_id", "price", "size")
QUOTE_COLUMNS = ("symbol", "ts", "exchange", "bid", "ask", "bid_size", "ask_size")
QUOTE_KEY = ("symbol", "ts", "exchange")
SIGNAL_COLUMNS = ("source", "symbol", "ts", "name", "value", "score", "metadata")
SIGNAL_KEY = ("source", "symbol", "ts", "name")


def to_micros(ts: datetime) -> int:
    return (ts - _EPOCH) // _US


def from_micros(value: int) -> datetime:
    return _EPOCH + value * _US


def bar_row(bar: Bar, ts: Any = None) -> tuple[Any, ...]:
    """``ts`` converts timestamps (to micros for SQLite; identity for PostgreSQL)."""
    start = bar.start if ts is None else ts(bar.start)
    return (
        bar.source, bar.symbol, str(bar.timeframe), start, bar.open, bar.high, bar.low,
        bar.close, bar.volume, bar.trade_count, bar.vwap,
    )  # fmt: skip


def trade_row(trade: Trade, ts: Any = None) -> tuple[Any, ...]:
    conditions = json.dumps(list(trade.conditions)) if trade.conditions else None
    return (
        trade.symbol, trade.ts if ts is None else ts(trade.ts), trade.trade_id or "",
        trade.price, trade.size, trade.exchange, trade.side, conditions,
    )  # fmt: skip


def quote_row(quote: Quote, ts: Any = None) -> tuple[Any, ...]:
    return (
        quote.symbol, quote.ts if ts is None else ts(quote.ts), quote.exchange or "",
        quote.bid, quote.ask, quote.bid_size, quote.ask_size,
    )  # fmt: skip


def signal_row(signal: Signal, ts: Any = None) -> tuple[Any, ...]:
    return (
        signal.source, signal.symbol, signal.ts if ts is None else ts(signal.ts), signal.name,
        signal.value, signal.score, json.dumps(signal.metadata, sort_keys=True),
    )  # fmt: skip


def last_per_key(
    rows: Iterable[tuple[Any, ...]], key_width: Sequence[int]
) -> list[tuple[Any, ...]]:
    """Keep the last row of each key (positions ``key_width``), in first-seen key order."""
    latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        latest[tuple(row[i] for i in key_width)] = row
    return list(latest.values())


def bar_from_row(row: Sequence[Any], ts: Any = None) -> Bar:
    values = dict(zip(BAR_COLUMNS, row, strict=True))
    if ts is not None:
        values["start"] = ts(values["start"])
    return Bar.model_validate(values)


def trade_from_row(row: Sequence[Any], ts: Any = None) -> Trade:
    values = dict(zip(TRADE_COLUMNS, row, strict=True))
    values["ts"] = values["ts"] if ts is None else ts(values["ts"])
    values["trade_id"] = values["trade_id"] or None
    values["conditions"] = tuple(json.loads(values["conditions"])) if values["conditions"] else ()
    return Trade.model_validate(values)


def quote_from_row(row: Sequence[Any], ts: Any = None) -> Quote:
    values = dict(zip(QUOTE_COLUMNS, row, strict=True))
    values["ts"] = values["ts"] if ts is None else ts(values["ts"])
    values["exchange"] = values["exchange"] or None
    return Quote.model_validate(values)


AUDIT_COLUMNS = (
    "id", "ts", "actor", "role", "action", "target", "result", "reason", "request_id", "details",
)  # fmt: skip


def audit_row(envelope: AuditEnvelope, ts: Any = None) -> tuple[Any, ...]:
    return (
        str(envelope.id), envelope.ts if ts is None else ts(envelope.ts), envelope.actor,
        envelope.role, envelope.action, envelope.target, envelope.result.value, envelope.reason,
        envelope.request_id, json.dumps(envelope.details, sort_keys=True),
    )  # fmt: skip


def audit_from_row(row: Sequence[Any], ts: Any = None) -> AuditEnvelope:
    values = dict(zip(AUDIT_COLUMNS, row, strict=True))
    values["ts"] = values["ts"] if ts is None else ts(values["ts"])
    if isinstance(values["details"], str):
        values["details"] = json.loads(values["details"])
    return AuditEnvelope.model_validate(values)


JOB_COLUMNS = (
    "id", "job_name", "provider", "mode", "status", "rows_written", "rows_failed", "symbols",
    "min_ts", "max_ts", "error", "started_at", "heartbeat_at", "finished_at", "config_fingerprint",
)  # fmt: skip
_JOB_TIMES = ("min_ts", "max_ts", "started_at", "heartbeat_at", "finished_at")


def job_row(run: Any, ts: Any = None) -> tuple[Any, ...]:
    values = run.model_dump()
    values["symbols"] = json.dumps(list(run.symbols))
    for name in _JOB_TIMES:
        if values[name] is not None and ts is not None:
            values[name] = ts(values[name])
    return tuple(values[c] for c in JOB_COLUMNS)


def job_from_row(row: Sequence[Any], ts: Any = None) -> Any:
    from market_data_store.jobs import JobRun  # noqa: PLC0415 - jobs imports this module

    values = dict(zip(JOB_COLUMNS, row, strict=True))
    if isinstance(values["symbols"], str):
        values["symbols"] = json.loads(values["symbols"])
    for name in _JOB_TIMES:
        if values[name] is not None and ts is not None:
            values[name] = ts(values[name])
    return JobRun.model_validate(values)

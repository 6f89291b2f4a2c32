"""Row tuples of audit records and job runs (private, shared by the backends), and the time
conversions of SQLite."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from market_data_core import AuditEnvelope, Bar
from market_data_store.job_run import JobRun

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

BAR_COLUMNS = (
    "source", "symbol", "timeframe", "start", "open", "high", "low", "close",
    "volume", "trade_count", "vwap",
)  # fmt: skip
"""A bar's columns before versions (the raw COPY baseline of bench/bench_store.py); the
store's layout of every table is ``_layout.LAYOUTS``."""


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


def job_from_row(row: Sequence[Any], ts: Any = None) -> JobRun:
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    if isinstance(values["symbols"], str):
        values["symbols"] = json.loads(values["symbols"])
    for name in _JOB_TIMES:
        if values[name] is not None and ts is not None:
            values[name] = ts(values[name])
    return JobRun.model_validate(values)

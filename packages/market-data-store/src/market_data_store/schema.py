"""The store's tables (SQLAlchemy Core). Alembic migrations create them; code that reads or
writes goes through a backend, never through these objects on a hot path.

Timestamps are ``TIMESTAMPTZ`` in PostgreSQL and integer microseconds since the epoch (UTC)
in SQLite, where they sort and compare as numbers.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "JOB_MODES",
    "JOB_STATUSES",
    "audit_log",
    "bars",
    "job_runs",
    "metadata",
    "quotes",
    "signals",
    "trades",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Timestamp = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, Timestamp, nullable=nullable)


bars = sa.Table(
    "bars",
    metadata,
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("timeframe", sa.Text, nullable=False),
    _ts("start"),
    sa.Column("open", sa.Float(53), nullable=False),
    sa.Column("high", sa.Float(53), nullable=False),
    sa.Column("low", sa.Float(53), nullable=False),
    sa.Column("close", sa.Float(53), nullable=False),
    sa.Column("volume", sa.Float(53), nullable=False),
    sa.Column("trade_count", sa.BigInteger, nullable=True),
    sa.Column("vwap", sa.Float(53), nullable=True),
    _ts("ingested_at"),
    sa.PrimaryKeyConstraint("source", "symbol", "timeframe", "start"),
    sa.Index(None, "symbol", "timeframe", "start"),
)

trades = sa.Table(
    "trades",
    metadata,
    sa.Column("symbol", sa.Text, nullable=False),
    _ts("ts"),
    sa.Column("trade_id", sa.Text, nullable=False, server_default=""),
    sa.Column("price", sa.Float(53), nullable=False),
    sa.Column("size", sa.Float(53), nullable=False),
    sa.Column("exchange", sa.Text, nullable=True),
    sa.Column("side", sa.Text, nullable=True),
    sa.Column("conditions", sa.Text, nullable=True),
    _ts("ingested_at"),
    sa.PrimaryKeyConstraint("symbol", "ts", "trade_id", "price", "size"),
)

quotes = sa.Table(
    "quotes",
    metadata,
    sa.Column("symbol", sa.Text, nullable=False),
    _ts("ts"),
    sa.Column("exchange", sa.Text, nullable=False, server_default=""),
    sa.Column("bid", sa.Float(53), nullable=False),
    sa.Column("ask", sa.Float(53), nullable=False),
    sa.Column("bid_size", sa.Float(53), nullable=False),
    sa.Column("ask_size", sa.Float(53), nullable=False),
    _ts("ingested_at"),
    sa.PrimaryKeyConstraint("symbol", "ts", "exchange"),
)

signals = sa.Table(
    "signals",
    metadata,
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    _ts("ts"),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("value", sa.Float(53), nullable=False),
    sa.Column("score", sa.Float(53), nullable=True),
    sa.Column("metadata", Json, nullable=False),
    _ts("ingested_at"),
    sa.PrimaryKeyConstraint("source", "symbol", "ts", "name"),
    sa.Index(None, "symbol", "name", "ts"),
)

JOB_MODES = ("live", "backfill")
JOB_STATUSES = ("running", "succeeded", "failed", "cancelled")

job_runs = sa.Table(
    "job_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("job_name", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows_written", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_failed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("symbols", Json, nullable=False),
    _ts("min_ts", nullable=True),
    _ts("max_ts", nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    _ts("started_at"),
    _ts("heartbeat_at"),
    _ts("finished_at", nullable=True),
    sa.Column("config_fingerprint", sa.String(64), nullable=True),
    sa.CheckConstraint(f"mode IN {JOB_MODES!r}", name="mode"),
    sa.CheckConstraint(f"status IN {JOB_STATUSES!r}", name="status"),
    sa.Index(None, "job_name", "started_at"),
    sa.Index(None, "status", "heartbeat_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    _ts("ts"),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=True),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("request_id", sa.Text, nullable=True),
    sa.Column("details", Json, nullable=False),
    sa.Index(None, "ts"),
)

"""Initial schema: bars, trades, quotes, signals, job_runs, audit_log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
Float = sa.Float(53)


def upgrade() -> None:
    op.create_table(
        "bars",
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("timeframe", sa.Text, nullable=False),
        sa.Column("start", Timestamp, nullable=False),
        sa.Column("open", Float, nullable=False),
        sa.Column("high", Float, nullable=False),
        sa.Column("low", Float, nullable=False),
        sa.Column("close", Float, nullable=False),
        sa.Column("volume", Float, nullable=False),
        sa.Column("trade_count", sa.BigInteger, nullable=True),
        sa.Column("vwap", Float, nullable=True),
        sa.Column("ingested_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("source", "symbol", "timeframe", "start", name="pk_bars"),
    )
    op.create_index("ix_bars_symbol_timeframe_start", "bars", ["symbol", "timeframe", "start"])
    op.create_table(
        "trades",
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("trade_id", sa.Text, nullable=False, server_default=""),
        sa.Column("price", Float, nullable=False),
        sa.Column("size", Float, nullable=False),
        sa.Column("exchange", sa.Text, nullable=True),
        sa.Column("side", sa.Text, nullable=True),
        sa.Column("conditions", sa.Text, nullable=True),
        sa.Column("ingested_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "ts", "trade_id", "price", "size", name="pk_trades"),
    )
    op.create_table(
        "quotes",
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("exchange", sa.Text, nullable=False, server_default=""),
        sa.Column("bid", Float, nullable=False),
        sa.Column("ask", Float, nullable=False),
        sa.Column("bid_size", Float, nullable=False),
        sa.Column("ask_size", Float, nullable=False),
        sa.Column("ingested_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "ts", "exchange", name="pk_quotes"),
    )
    op.create_table(
        "signals",
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("value", Float, nullable=False),
        sa.Column("score", Float, nullable=True),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("ingested_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("source", "symbol", "ts", "name", name="pk_signals"),
    )
    op.create_index("ix_signals_symbol_name_ts", "signals", ["symbol", "name", "ts"])
    op.create_table(
        "job_runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("job_name", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_written", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_failed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("symbols", Json, nullable=False),
        sa.Column("min_ts", Timestamp, nullable=True),
        sa.Column("max_ts", Timestamp, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("heartbeat_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("config_fingerprint", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
        sa.CheckConstraint("mode IN ('live', 'backfill')", name="ck_job_runs_mode"),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'cancelled')", name="ck_job_runs_status"
        ),
    )
    op.create_index("ix_job_runs_job_name_started_at", "job_runs", ["job_name", "started_at"])
    op.create_index("ix_job_runs_status_heartbeat_at", "job_runs", ["status", "heartbeat_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("request_id", sa.Text, nullable=True),
        sa.Column("details", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])


def downgrade() -> None:
    for table in ("audit_log", "job_runs", "signals", "quotes", "trades", "bars"):
        op.drop_table(table)

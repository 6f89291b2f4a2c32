"""The store's tables (SQLAlchemy Core). Alembic migrations create them; code that reads or
writes goes through a backend, never through these objects on a hot path.

Timestamps are ``TIMESTAMPTZ`` in PostgreSQL and integer microseconds since the epoch (UTC)
in SQLite, where they sort and compare as numbers; the nanoseconds of an event time below
its microsecond are in ``ts_nanos``, versions (``as_of``) and receive times are integer
nanoseconds. The layout is explained in ``backends/_layout.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "JOB_MODES",
    "JOB_STATUSES",
    "audit_log",
    "bars",
    "bars_history",
    "job_runs",
    "metadata",
    "quotes",
    "quotes_history",
    "signals",
    "signals_history",
    "trades",
    "trades_history",
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


_BigInt = sa.BigInteger


def _version() -> list[sa.Column[object]]:
    return [
        sa.Column("as_of", _BigInt, nullable=False, server_default="0"),
        sa.Column("revision", _BigInt, nullable=False, server_default="0"),
        sa.Column("reason", sa.Text, nullable=True),
    ]


def _bars(name: str, *, history: bool = False) -> sa.Table:
    return sa.Table(
        name,
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
        *_version(),
        *_stamps(history),
        *(
            [sa.Index(f"ix_{name}_key", "symbol", "timeframe", "start")]
            if history
            else [
                sa.PrimaryKeyConstraint("source", "symbol", "timeframe", "start"),
                sa.Index(None, "symbol", "timeframe", "start"),
            ]
        ),
    )


def _stamps(history: bool) -> list[sa.Column[object]]:
    """``ingested_at``: when the store learned the version; in history, ``superseded_at``:
    when a newer one replaced it."""
    return [_ts("ingested_at"), *([_ts("superseded_at")] if history else [])]


def _trades(name: str, *, history: bool = False) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("symbol", sa.Text, nullable=False),
        _ts("ts"),
        sa.Column("ts_nanos", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("exchange", sa.Text, nullable=False, server_default=""),
        sa.Column("trade_id", sa.Text, nullable=False, server_default=""),
        sa.Column("ordinal", _BigInt, nullable=False, server_default="0"),
        sa.Column("price", sa.Float(53), nullable=False),
        sa.Column("size", sa.Float(53), nullable=False),
        sa.Column("side", sa.Text, nullable=True),
        sa.Column("conditions", sa.Text, nullable=True),
        sa.Column("received_at", _BigInt, nullable=True),
        *_version(),
        *_stamps(history),
        *(
            [sa.Index(f"ix_{name}_key", "symbol", "ts")]
            if history
            else [
                sa.PrimaryKeyConstraint(
                    "symbol", "ts", "ts_nanos", "exchange", "trade_id", "ordinal"
                )
            ]
        ),
    )


def _quotes(name: str, *, history: bool = False) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("symbol", sa.Text, nullable=False),
        _ts("ts"),
        sa.Column("ts_nanos", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("exchange", sa.Text, nullable=False, server_default=""),
        sa.Column("sequence", _BigInt, nullable=False, server_default="-1"),
        sa.Column("ordinal", _BigInt, nullable=False, server_default="0"),
        sa.Column("bid", sa.Float(53), nullable=False),
        sa.Column("ask", sa.Float(53), nullable=False),
        sa.Column("bid_size", sa.Float(53), nullable=False),
        sa.Column("ask_size", sa.Float(53), nullable=False),
        sa.Column("received_at", _BigInt, nullable=True),
        *_version(),
        *_stamps(history),
        *(
            [sa.Index(f"ix_{name}_key", "symbol", "ts")]
            if history
            else [
                sa.PrimaryKeyConstraint(
                    "symbol", "ts", "ts_nanos", "exchange", "sequence", "ordinal"
                )
            ]
        ),
    )


def _signals(name: str, *, history: bool = False) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        _ts("ts"),
        sa.Column("ts_nanos", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("value", sa.Float(53), nullable=False),
        sa.Column("score", sa.Float(53), nullable=True),
        sa.Column("metadata", sa.Text, nullable=False),  # JSON text
        *_version(),
        *_stamps(history),
        *(
            [sa.Index(f"ix_{name}_key", "symbol", "name", "ts")]
            if history
            else [
                sa.PrimaryKeyConstraint("source", "symbol", "ts", "ts_nanos", "name"),
                sa.Index(None, "symbol", "name", "ts"),
            ]
        ),
    )


bars = _bars("bars")
trades = _trades("trades")
quotes = _quotes("quotes")
signals = _signals("signals")
bars_history = _bars("bars_history", history=True)
trades_history = _trades("trades_history", history=True)
quotes_history = _quotes("quotes_history", history=True)
signals_history = _signals("signals_history", history=True)
"""History: the versions a newer one replaced (a trigger on update copies them; see
migration 0002 and ``backends/_layout.py``)."""

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

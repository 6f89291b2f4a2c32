"""TimescaleDB, when the database has it: hypertables, compression and retention policies.

Feature-detected: on plain PostgreSQL (and SQLite) nothing here runs and everything works
as before. When the ``timescaledb`` extension is installed in the database (``CREATE
EXTENSION timescaledb``, which needs ``shared_preload_libraries = 'timescaledb'``),
:func:`configure` turns ``bars``, ``trades`` and ``quotes`` into hypertables partitioned by
their time column (their primary keys all include it), enables native compression
segmented by symbol, and adds a compression policy and, when configured, a retention
policy. Every statement is idempotent (``if_not_exists``), so it runs on every start and
``mds migrate``. Upserts into compressed chunks need TimescaleDB 2.11 or newer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import structlog

__all__ = ["HYPERTABLES", "TimescalePlan", "TimescaleReport", "configure", "detect"]

logger = structlog.get_logger(__name__)

HYPERTABLES: Final = {"bars": "start", "trades": "ts", "quotes": "ts"}
"""Table -> its time column (part of every primary key, as hypertables require)."""
_SEGMENT_BY: Final = {"bars": "symbol, timeframe", "trades": "symbol", "quotes": "symbol"}


@dataclass(frozen=True, slots=True)
class TimescalePlan:
    """What to set up; intervals are PostgreSQL interval text (``'1 day'``)."""

    chunk_interval: str = "1 day"
    compress_after: str | None = "7 days"
    retention: str | None = None

    def statements(self) -> list[str]:
        """The idempotent SQL that applies the plan (tables and intervals are fixed names or
        values validated by ``StoreSettings``)."""
        sql = []
        for table, column in HYPERTABLES.items():
            sql.append(
                f"SELECT create_hypertable('{table}', '{column}',"
                f" chunk_time_interval => INTERVAL '{self.chunk_interval}',"
                " if_not_exists => TRUE, migrate_data => TRUE)"
            )
            if self.compress_after is not None:
                sql.append(
                    f"ALTER TABLE {table} SET (timescaledb.compress,"
                    f" timescaledb.compress_segmentby = '{_SEGMENT_BY[table]}',"
                    f" timescaledb.compress_orderby = '{column} DESC')"
                )
                sql.append(
                    f"SELECT add_compression_policy('{table}',"
                    f" INTERVAL '{self.compress_after}', if_not_exists => TRUE)"
                )
            if self.retention is not None:
                sql.append(
                    f"SELECT add_retention_policy('{table}',"
                    f" INTERVAL '{self.retention}', if_not_exists => TRUE)"
                )
        return sql


@dataclass(slots=True)
class TimescaleReport:
    """What :func:`configure` found and did."""

    version: str | None
    hypertables: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def present(self) -> bool:
        return self.version is not None


async def detect(connection: Any) -> str | None:
    """The installed TimescaleDB extension's version in this database, or ``None``."""
    version: str | None = await connection.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    return version


async def configure(connection: Any, plan: TimescalePlan) -> TimescaleReport:
    """Apply ``plan`` when TimescaleDB is installed; a no-op report on plain PostgreSQL."""
    version = await detect(connection)
    if version is None:
        return TimescaleReport(version=None)
    report = TimescaleReport(version=version)
    try:
        async with connection.transaction():
            for statement in plan.statements():
                await connection.execute(statement)
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"[:500]
        logger.warning("timescaledb setup failed", error=report.error)
        return report
    report.hypertables = list(HYPERTABLES)
    logger.info("timescaledb configured", version=version, plan=str(plan))
    return report

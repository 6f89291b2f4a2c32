"""Migration 0002 on databases written by the store before it (commit d3e2e0a, committed as
fixtures in tests/fixtures/legacy): every stored row is kept, with the oldest version there
is (``as_of`` 0), ticks marked as stored without nanoseconds; the migrated store takes
versioned writes; ticks ingested again with their nanoseconds replace their truncated twins
(kept in history) instead of being stored beside them. Real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from market_data_core import Trade, from_ns, to_ns
from market_data_core.columns import Kind
from market_data_core.timestamps import NanoDatetime
from market_data_store.backends.postgres import PostgresBackend
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import current_revision, upgrade
from market_data_store.migrations import HEAD
from market_data_store.testing import PostgresServer, find_pg_bin

pytestmark = pytest.mark.asyncio

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"
EXPECTED = json.loads((LEGACY / "expected-d3e2e0a.json").read_text())
TABLES = ("bars", "trades", "quotes", "signals", "job_runs", "audit_log")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WIDE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))

# The rows as the old schema kept them: the columns a test compares, in a fixed order.
_OLD = {
    "bars": "source, symbol, timeframe, start, open, high, low, close, volume, trade_count, vwap",
    "trades": "symbol, ts, trade_id, price, size, exchange, side, conditions",
    "quotes": "symbol, ts, exchange, bid, ask, bid_size, ask_size",
    "signals": "source, symbol, ts, name, value, score, metadata",
    "job_runs": "id, job_name, status, rows_written",
    "audit_log": "id, actor, action, result",
}


def _normal(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A row comparable across the two schemas and databases (times as microseconds since
    the epoch, a missing exchange as '', metadata as a dict)."""
    out = []
    for name, cell in zip(_OLD[table].split(", "), row, strict=True):
        value = cell
        if isinstance(value, datetime):
            value = (value - EPOCH) // timedelta(microseconds=1)
        if table == "trades" and name == "exchange":
            value = value or ""
        if name == "metadata":
            value = json.loads(value) if isinstance(value, str) else value
        out.append(value)
    return tuple(out)


def _sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    connection = sqlite3.connect(path)
    try:
        return {
            t: sorted(
                map(lambda r, t=t: _normal(t, r), connection.execute(f"SELECT {_OLD[t]} FROM {t}"))
            )  # type: ignore[misc]
            for t in TABLES
        }
    finally:
        connection.close()


async def _pg_rows(url: DatabaseUrl) -> dict[str, list[tuple[Any, ...]]]:
    connection = await asyncpg.connect(url.asyncpg_dsn())
    try:
        out = {}
        for t in TABLES:
            records = await connection.fetch(f"SELECT {_OLD[t]} FROM {t}")
            out[t] = sorted(_normal(t, tuple(r)) for r in records)
        return out
    finally:
        await connection.close()


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def legacy(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> AsyncIterator[tuple[DatabaseUrl, dict[str, list[tuple[Any, ...]]]]]:
    """A database as the old store wrote it, and its rows read before the migration."""
    if request.param == "sqlite":
        path = tmp_path / "legacy.db"
        shutil.copy(LEGACY / "store-d3e2e0a.db", path)
        url = DatabaseUrl.parse(f"sqlite:///{path}")
        before = _sqlite_rows(path)
    else:
        url = await postgres_server.create_database()
        psql = Path(find_pg_bin("initdb")).resolve().parent / "psql"  # noqa: ASYNC240
        command = [str(psql) if psql.exists() else "psql", "-v", "ON_ERROR_STOP=1", "-q"]
        dsn = url.asyncpg_dsn()
        subprocess.run(  # noqa: ASYNC221 - the test waits for the restore anyway
            [*command, "-d", dsn, "-f", str(LEGACY / "store-d3e2e0a.sql")],
            check=True,
            capture_output=True,
            timeout=120,
        )
        before = await _pg_rows(url)
    yield url, before


async def test_every_row_written_before_the_migration_is_kept(
    legacy: tuple[DatabaseUrl, dict[str, list[tuple[Any, ...]]]],
) -> None:
    url, before = legacy
    database = "sqlite" if url.is_sqlite else "postgresql"
    assert {t: len(rows) for t, rows in before.items()} == EXPECTED[database]["rows"]
    assert await current_revision(url) == "0001"
    await upgrade(url)
    assert await current_revision(url) == HEAD
    after = _sqlite_rows(url.sqlite_path()) if url.is_sqlite else await _pg_rows(url)
    assert after == before  # every row of every table, value for value


async def test_migrated_rows_have_the_oldest_version_and_read_back_as_models(
    legacy: tuple[DatabaseUrl, dict[str, list[tuple[Any, ...]]]],
) -> None:
    url, before = legacy
    await upgrade(url)
    backend: Any = SqliteBackend(url) if url.is_sqlite else PostgresBackend(url)
    await backend.open()
    try:
        trades = [
            t for s in ("AAPL", "MSFT", "BTC/USDT") for t in await backend.query_trades(s, *WIDE)
        ]
        assert len(trades) == len(before["trades"])
        assert {(to_ns(t.as_of), t.revision) for t in trades} == {(0, 0)}  # type: ignore[arg-type]
        # the two MSFT trades the old key told apart by price alone get ordinals 0 and 1
        twins = [t for t in trades if t.symbol == "MSFT" and t.ts.microsecond == 345678]
        assert sorted(t.ordinal or 0 for t in twins) == [0, 1]
        assert len({t.price for t in twins}) == 2
        bars = await backend.query_bars("AAPL", "1m", *WIDE, limit=1000)
        assert {(to_ns(b.as_of), b.revision) for b in bars} == {(0, 0)}  # type: ignore[arg-type]
        history = await backend.revisions(Kind.BARS, "AAPL", *WIDE)
        assert history.column("superseded_at").null_count == history.num_rows  # none replaced
    finally:
        await backend.close()


async def test_ticks_ingested_again_with_nanoseconds_replace_their_truncated_twins(
    legacy: tuple[DatabaseUrl, dict[str, list[tuple[Any, ...]]]],
) -> None:
    """The old store kept microseconds: ingesting the same ticks again with their
    nanoseconds stores each once, exactly, and keeps the truncated row in history."""
    url, before = legacy
    await upgrade(url)
    backend: Any = SqliteBackend(url) if url.is_sqlite else PostgresBackend(url)
    await backend.open()
    try:
        old = await backend.query_trades("AAPL", *WIDE, limit=1000)
        exact = [
            t.model_copy(
                update={
                    "ts": NanoDatetime.combine_ns(t.ts, 250),
                    "as_of": datetime(2024, 6, 1, tzinfo=UTC),
                }
            )
            for t in old
        ]
        await backend.write(exact)
        now = await backend.query_trades("AAPL", *WIDE, limit=1000)
        assert len(now) == len(old)  # replaced, not stored beside
        assert sorted(to_ns(t.ts) for t in now) == sorted(to_ns(t.ts) for t in exact)
        assert await backend.count("trades") == len(before["trades"])
        history = await backend.revisions(Kind.TRADES, "AAPL", *WIDE, limit=10_000)
        replaced = history.filter(history.column("superseded_at").is_valid())
        assert replaced.num_rows == len(old)  # the truncated rows, kept as history
        other = await backend.query_trades("MSFT", *WIDE, limit=1000)
        assert all(t.ts.microsecond and getattr(t.ts, "nanosecond", 0) == 0 for t in other)
    finally:
        await backend.close()


async def test_a_migrated_store_keeps_the_newest_version(
    legacy: tuple[DatabaseUrl, dict[str, list[tuple[Any, ...]]]],
) -> None:
    url, _ = legacy
    await upgrade(url)
    backend: Any = SqliteBackend(url) if url.is_sqlite else PostgresBackend(url)
    await backend.open()
    try:
        (bar,) = await backend.query_bars("AAPL", "1m", *WIDE, limit=1)
        newer = bar.model_copy(update={"close": bar.low, "as_of": from_ns(1), "revision": 1})
        older = bar.model_copy(update={"close": bar.high, "as_of": from_ns(1), "revision": 0})
        await backend.write([newer])
        await backend.write([older])
        (stored,) = await backend.query_bars(
            "AAPL", "1m", bar.start, bar.start + timedelta(minutes=1)
        )
        assert stored == newer
        trade = Trade(symbol="AAPL", ts=from_ns(to_ns(bar.start) + 7), price=1.0, size=1.0,
                      as_of=from_ns(1))  # fmt: skip
        await backend.write([trade, trade.model_copy(update={"ordinal": None})])
        stored_trades = await backend.query_trades("AAPL", *WIDE, limit=1000)
        assert [t.ordinal for t in stored_trades if t.ts == trade.ts] == [0, 1]
    finally:
        await backend.close()

"""The pipeline and the store together keep the newest truth and every tick (issue 23), on
real PostgreSQL (and SQLite), in process and through ``mds serve``:

- late revisions of bars are never lost to the order in which the store's two workers (or
  the HTTP sink's requests in flight) commit: 300 symbols whose bar is emitted, then revised
  by a late trade, with one record per replay batch and one row per store batch;
- the real Binance trades without their id column: every trade stored once (12 of them
  are identical in symbol, time, price and size), at batch sizes that split those, and a
  second replay changes nothing: no row rewritten, no history.

``MD_STRESS_RUNS`` repeats the first (``nox -s stress`` runs it 20 times per way)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from harness import DATA, EVER_END, EVER_START
from pydantic import SecretStr

from market_data_core.columns import Kind
from market_data_pipeline import UnifiedRuntime, UnifiedRuntimeSettings
from market_data_store.settings import StoreSettings
from market_data_store.store import Store
from market_data_store.testing import PostgresServer, StoreService

RUNS = max(1, int(os.environ.get("MD_STRESS_RUNS", "1")))
SYMBOLS = 300
S = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def _late_trades(path: Path) -> Path:
    """Symbol i trades twice in its own second [S+i, S+i+1); the next symbol's first trade
    moves the watermark past it (symbol i's bar is emitted), and symbol i's third trade,
    back in its second, comes right after (late, within the allowed lateness: the bar is
    revised at once): the bar and its revision follow each other into the store."""
    rows: list[tuple[str, datetime, float]] = []
    for i in range(SYMBOLS):
        second = S + timedelta(seconds=i)
        rows.append((f"S{i:03d}", second + timedelta(milliseconds=100), 100.0))
        if i:  # the previous symbol's late trade, right after its bar was emitted
            rows.append((f"S{i - 1:03d}", second - timedelta(milliseconds=100), 102.0))
        rows.append((f"S{i:03d}", second + timedelta(milliseconds=200), 101.0))
    last = S + timedelta(seconds=SYMBOLS)
    rows += [("ZZZ", last + timedelta(milliseconds=100), 1.0),
             (f"S{SYMBOLS - 1:03d}", last - timedelta(milliseconds=100), 102.0),
             ("ZZZ", last + timedelta(seconds=10), 1.0)]  # fmt: skip
    table = pa.table(
        {
            "symbol": [r[0] for r in rows],
            "ts": pa.array([r[1] for r in rows], pa.timestamp("us", "UTC")),
            "price": [r[2] for r in rows],
            "size": [1.0] * len(rows),
        }
    )
    pacsv.write_csv(table, path)
    return path


def _late_config(trades: Path, sink: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "late-revisions",
        "nodes": [
            {"id": "trades", "type": "replay",
             "params": {"path": str(trades), "kind": "trades", "batch_size": 1}},
            {"id": "bars", "type": "resample_ohlc",
             "params": {"timeframe": "1s", "allowed_lateness": 2}},
            {"id": "store", "type": "store", "params": sink},
        ],
        "edges": ["trades -> bars", "bars -> store"],
    }  # fmt: skip


async def _stale(dsn: str) -> list[str]:
    """The symbols whose stored bar is not the final revision (three trades, close 102)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT symbol, close, trade_count, revision FROM bars WHERE symbol <> 'ZZZ'"
        )
    finally:
        await connection.close()
    assert len(rows) == SYMBOLS
    return [
        r["symbol"] for r in rows if (r["close"], r["trade_count"], r["revision"]) != (102.0, 3, 3)
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize("way", ["in process", "mds serve"])
async def test_late_revisions_win_whatever_the_commit_order(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    trades = _late_trades(tmp_path / "late.csv")
    monkeypatch.setenv("MDS_BATCH_SIZE", "1")  # one row per write: commits race
    monkeypatch.setenv("MDS_WORKERS", "2")
    stale = []
    for run in range(RUNS):
        url = await postgres_server.create_database(f"late_{way.replace(' ', '_')}_{run}")
        dsn = url.secret()
        settings = UnifiedRuntimeSettings.load(None, database_url=SecretStr(dsn))
        if way == "in process":
            async with UnifiedRuntime(settings) as runtime:
                await runtime.run(_late_config(trades, {}))
        else:
            env = {"MDS_BATCH_SIZE": "1", "MDS_WORKERS": "2"}
            with StoreService(tmp_path, database_url=dsn, env=env) as service:
                async with UnifiedRuntime(settings) as runtime:
                    await runtime.run(_late_config(trades, {"url": service.url}))
        stale += await _stale(dsn)
    print(f"\nlate revisions {way}: {len(stale)} stale bars of {SYMBOLS} in {RUNS} run(s)")
    assert stale == []


def _without_ids(path: Path) -> Path:
    table = pq.read_table(DATA / "btcusdt-trades.parquet")
    names = [n for n in table.column_names if n not in {"trade_id", "id", "tid"}]
    pq.write_table(table.select(names), path)
    return path


async def _trades_and_history(dsn: str) -> tuple[int, int, Any]:
    async with Store(StoreSettings(database_url=SecretStr(dsn))) as store:
        stored = await store.query_table(Kind.TRADES, "BTC/USDT", EVER_START, EVER_END)
        history = await store.revisions(Kind.TRADES, "BTC/USDT", EVER_START, EVER_END)
    replaced = history.filter(history.column("superseded_at").is_valid()).num_rows
    newest = max(history.column("ingested_at").to_pylist())
    return stored.num_rows, replaced, newest


@pytest.mark.asyncio
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize("batch_size", [7, 1000])
async def test_every_binance_trade_without_its_id_is_stored_once(
    postgres_server: PostgresServer, tmp_path: Path, database: str, batch_size: int
) -> None:
    trades = _without_ids(tmp_path / "btcusdt-no-ids.parquet")
    source = pq.read_table(trades)
    keys = source.group_by(["timestamp", "price", "quantity"]).aggregate([([], "count_all")])
    assert source.num_rows == 2001
    assert keys.num_rows < source.num_rows  # identical trades are there to be kept
    if database == "sqlite":
        dsn = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        dsn = (await postgres_server.create_database(f"binance_{batch_size}")).secret()
    config = {
        "name": "binance-no-ids",
        "nodes": [
            {"id": "trades", "type": "replay",
             "params": {"path": str(trades), "kind": "trades", "symbol": "BTC/USDT",
                        "batch_size": batch_size}},
            {"id": "store", "type": "store"},
        ],
        "edges": ["trades -> store"],
    }  # fmt: skip
    settings = UnifiedRuntimeSettings.load(None, database_url=SecretStr(dsn))
    async with UnifiedRuntime(settings) as runtime:
        await runtime.run(config)
    first = await _trades_and_history(dsn)
    assert first[:2] == (2001, 0)
    async with UnifiedRuntime(settings) as runtime:  # the same file again
        await runtime.run(config)
    assert await _trades_and_history(dsn) == first  # nothing rewritten, no history

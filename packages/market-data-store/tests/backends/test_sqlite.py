"""The embedded SQLite backend on a real file: idempotent upserts, revisions, queries."""

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from market_data_core import Bar, Timeframe
from market_data_core.testing import (
    T0,
    make_bar,
    make_quote,
    make_signal,
    random_walk_trades,
)
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import StoreConfigurationError, TransientBackendError
from market_data_store.migrate import current_revision, head_revision, upgrade

pytestmark = pytest.mark.asyncio
M1 = Timeframe.parse("1m")


def minute_bars(n: int, *, symbol: str = "AAPL", start_price: float = 100.0) -> list[Bar]:
    return [
        make_bar(
            symbol=symbol,
            start=T0 + i * M1.delta,
            open=start_price + i,
            high=start_price + i + 1,
            low=start_price + i - 1,
            close=start_price + i + 0.5,
            vwap=None,
        )
        for i in range(n)
    ]


@pytest_asyncio.fixture
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[SqliteBackend]:
    url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'store.db'}")
    await upgrade(url)
    backend = SqliteBackend(url)
    await backend.open()
    yield backend
    await backend.close()


async def test_stores_that_start_together_on_a_new_file_all_migrate_it(tmp_path: Path) -> None:
    """Several stores opening one new database file at once (workers of one job, say): each
    migrates or waits for the one that does; none fails with "table bars already exists"."""
    for attempt in range(3):
        url = DatabaseUrl.parse(f"sqlite:///{tmp_path / f'new-{attempt}.db'}")
        revisions = await asyncio.gather(*(upgrade(url) for _ in range(4)))
        assert set(revisions) == {head_revision()}


async def test_migrations_reach_head_and_are_idempotent(tmp_path: Path) -> None:
    url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'new' / 'store.db'}")
    assert await current_revision(url) is None
    assert await upgrade(url) == head_revision()
    assert await upgrade(url) == head_revision()


async def test_bars_round_trip_and_replay_changes_nothing(sqlite_backend: SqliteBackend) -> None:
    bars = minute_bars(50)
    result = await sqlite_backend.write(bars)
    assert result.bars == 50
    stored = await sqlite_backend.query_bars("AAPL", "1m", T0, T0 + timedelta(days=1))
    assert stored == bars
    before = _ingested_at(sqlite_backend)
    await sqlite_backend.write(bars)
    assert await sqlite_backend.count("bars") == 50
    assert _ingested_at(sqlite_backend) == before  # untouched rows: nothing rewritten


async def test_a_batch_of_stored_and_new_keys_keeps_the_old_and_adds_the_new(
    sqlite_backend: SqliteBackend,
) -> None:
    """The append fast path fails on the first stored key; the upsert that follows writes
    the new rows and leaves the unchanged old ones as they were (ingested_at too)."""
    bars = minute_bars(40)
    await sqlite_backend.write(bars[:20])
    before = _ingested_at(sqlite_backend)
    revised = bars[5].model_copy(update={"close": bars[5].high})
    result = await sqlite_backend.write([*bars[:5], revised, *bars[6:]])
    assert result.bars == 40
    stored = await sqlite_backend.query_bars("AAPL", "1m", T0, T0 + timedelta(days=1))
    assert stored == [*bars[:5], revised, *bars[6:]]
    after = _ingested_at(sqlite_backend)
    assert len(after) == 40
    assert after[:5] + after[6:20] == before[:5] + before[6:]  # unchanged rows untouched


async def test_newer_revision_replaces_and_last_in_batch_wins(
    sqlite_backend: SqliteBackend,
) -> None:
    first = make_bar(close=185.5)
    await sqlite_backend.write([first])
    revised = make_bar(close=185.7, high=186.0, volume=15_000.0)
    await sqlite_backend.write([make_bar(close=185.1), revised])
    (stored,) = await sqlite_backend.query_bars("AAPL", "1m", T0, T0 + M1.delta)
    assert stored == revised


@pytest.mark.parametrize("batch", [3, 2_500])
async def test_constant_columns_of_a_large_batch_are_stored_exactly(
    sqlite_backend: SqliteBackend, batch: int
) -> None:
    """From ``_LITERAL_FROM`` rows a batch's constant columns (a venue, a reason, a version)
    become literals of the statement: the same rows come back as from small batches,
    whatever the text holds (a quote, non-ASCII), a replay changes nothing and a newer
    version replaces every row."""
    walk = random_walk_trades(count=2_600, seed=3)
    extra = {"exchange": "O'Hare; DROP TABLE trades;--", "reason": "fix \u00e9'", "revision": 7}
    trades = [t.model_copy(update=extra) for t in walk]
    trades[100] = trades[100].model_copy(update={"side": "buy", "trade_id": "x'1"})
    for i in range(0, len(trades), batch):
        await sqlite_backend.write(trades[i : i + batch])
    end = T0 + timedelta(days=1)
    assert await sqlite_backend.query_trades("AAPL", T0, end, limit=10_000) == trades
    before = _ingested_at(sqlite_backend, "trades")
    await sqlite_backend.write(trades)  # one batch of 2,600: the literal path
    assert _ingested_at(sqlite_backend, "trades") == before
    newer = [t.model_copy(update={"revision": 8, "price": t.price + 1}) for t in trades]
    assert (await sqlite_backend.write(newer)).trades == len(newer)
    assert await sqlite_backend.query_trades("AAPL", T0, end, limit=10_000) == newer


async def test_a_large_batch_whose_first_and_last_rows_agree_is_stored_exactly(
    sqlite_backend: SqliteBackend,
) -> None:
    """Batches past ``_LITERAL_FROM`` rows whose venue, revision and reason agree in the
    first and last row but not in one row between: every row comes back as written."""
    walk = random_walk_trades(count=2_500, seed=5)
    same = {"exchange": "X", "reason": "r", "revision": 3}
    trades = [t.model_copy(update=same) for t in walk]
    for i, update in ((1, {"exchange": "Y"}), (1_200, {"revision": 4}), (2_498, {"reason": "s"})):
        trades[i] = trades[i].model_copy(update=update)
    await sqlite_backend.write(trades)
    end = T0 + timedelta(days=1)
    assert await sqlite_backend.query_trades("AAPL", T0, end, limit=10_000) == trades


async def test_paging_with_limit(sqlite_backend: SqliteBackend) -> None:
    bars = minute_bars(25)
    await sqlite_backend.write(bars)
    pages, start = [], T0
    while page := await sqlite_backend.query_bars(
        "AAPL", "1m", start, T0 + timedelta(hours=1), limit=10
    ):
        pages.append(page)
        start = page[-1].start + timedelta(microseconds=1)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [b for p in pages for b in p] == bars


async def test_sources_are_separate_keys(sqlite_backend: SqliteBackend) -> None:
    await sqlite_backend.write([make_bar(source="a"), make_bar(source="b", close=185.0)])
    both = await sqlite_backend.query_bars("AAPL", "1m", T0, T0 + M1.delta)
    assert [b.source for b in both] == ["a", "b"]
    only_b = await sqlite_backend.query_bars("AAPL", "1m", T0, T0 + M1.delta, source="b")
    assert [b.close for b in only_b] == [185.0]


async def test_latest_bar_per_symbol(sqlite_backend: SqliteBackend) -> None:
    await sqlite_backend.write([*minute_bars(5, symbol="AAPL"), *minute_bars(3, symbol="MSFT")])
    latest = await sqlite_backend.latest_bars("1m")
    assert [(b.symbol, b.start) for b in latest] == [
        ("AAPL", T0 + 4 * M1.delta),
        ("MSFT", T0 + 2 * M1.delta),
    ]
    assert [b.symbol for b in await sqlite_backend.latest_bars("1m", ["MSFT"])] == ["MSFT"]
    assert await sqlite_backend.latest_bars("5m") == []


async def test_trades_quotes_signals_and_freshness(sqlite_backend: SqliteBackend) -> None:
    trades = random_walk_trades("BTC/USDT", 200, seed=3)
    trades[0] = trades[0].model_copy(update={"trade_id": "42", "conditions": ("I",), "side": "buy"})
    quotes = [
        make_quote(ts=T0 + timedelta(seconds=i), bid=100.0 + i, ask=100.5 + i) for i in range(10)
    ]
    signal = make_signal(metadata={"window": 20, "model": "ema"})
    result = await sqlite_backend.write([*trades, *quotes, signal, *trades])  # replay within batch
    assert (result.trades, result.quotes, result.signals) == (200, 10, 1)
    assert (
        await sqlite_backend.query_trades("BTC/USDT", T0, T0 + timedelta(days=1), limit=500)
        == trades
    )
    assert await sqlite_backend.query_quotes("AAPL", T0, T0 + timedelta(hours=1)) == quotes
    fresh = {(f.table, f.symbol): f for f in await sqlite_backend.freshness()}
    assert fresh[("trades", "BTC/USDT")].latest == trades[-1].ts
    assert fresh[("trades", "BTC/USDT")].rows == 200
    assert fresh[("quotes", "AAPL")].latest == quotes[-1].ts
    assert fresh[("signals", "AAPL")].rows == 1


async def test_unknown_table_is_a_configuration_error(sqlite_backend: SqliteBackend) -> None:
    with pytest.raises(StoreConfigurationError, match="unknown table 'nope'"):
        await sqlite_backend.count("nope")


async def test_locked_database_is_transient(tmp_path: Path) -> None:
    url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'store.db'}")
    await upgrade(url)
    backend = SqliteBackend(url, busy_timeout_ms=50)
    await backend.open()
    blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TransientBackendError, match="locked"):
            await backend.write([make_bar()])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert (await backend.write([make_bar()])).bars == 1  # and it recovers
    await backend.close()


async def test_closed_backend_raises_transient(tmp_path: Path) -> None:
    backend = SqliteBackend(DatabaseUrl.parse(f"sqlite:///{tmp_path / 'x.db'}"))
    with pytest.raises(TransientBackendError, match="not open"):
        await backend.ping()


async def test_requires_a_sqlite_url() -> None:
    with pytest.raises(StoreConfigurationError, match="needs a sqlite:/// URL") as excinfo:
        SqliteBackend(DatabaseUrl.parse("postgresql://u:secret@localhost/db"))
    assert "secret" not in str(excinfo.value)


def _ingested_at(backend: SqliteBackend, table: str = "bars") -> list[int]:
    order = "start" if table == "bars" else "ts, ts_nanos, ordinal"
    db = sqlite3.connect(backend.path)
    try:
        return [row[0] for row in db.execute(f"SELECT ingested_at FROM {table} ORDER BY {order}")]
    finally:
        db.close()


async def test_the_head_the_store_knows_without_alembic_is_alembics_head() -> None:
    from market_data_store.migrations import HEAD

    assert head_revision() == HEAD


async def test_a_store_on_a_migrated_database_starts_without_alembic(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'store.db'}"
    script = (
        "import asyncio, sys\n"
        "from pydantic import SecretStr\n"
        "from market_data_store.settings import StoreSettings\n"
        "from market_data_store.store import Store\n"
        "async def main():\n"
        f"    store = Store(StoreSettings(database_url=SecretStr({url!r})))\n"
        "    await store.start(migrate=True)\n"
        "    await store.stop()\n"
        "    print('alembic' in sys.modules)\n"
        "asyncio.run(main())\n"
    )

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        return done.stdout.split()[-1]

    first, again = await asyncio.to_thread(run), await asyncio.to_thread(run)
    assert first == "True"  # a new database: migrated with Alembic
    assert again == "False"  # at head already: Alembic never loaded
    backend = SqliteBackend(DatabaseUrl.parse(url))
    await backend.open()
    try:
        assert await backend.schema_revision() == head_revision()
    finally:
        await backend.close()

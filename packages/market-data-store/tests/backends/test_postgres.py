"""The PostgreSQL backend against a real server: COPY-based idempotent upserts (with and
without the append fast path), queries, error mapping, and recovery after the server stops,
restarts or crashes. Nothing is mocked."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr

from market_data_core import Bar, Signal, Timeframe, from_ns
from market_data_core.testing import (
    AS_OF,
    T0,
    make_audit,
    make_bar,
    make_quote,
    make_signal,
    make_trade,
    random_walk_trades,
)
from market_data_core.testing.servers import scaled
from market_data_store import migrations
from market_data_store.backends.base import Backend
from market_data_store.backends.postgres import PostgresBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import (
    BackendError,
    InvalidValueError,
    PermanentBackendError,
    StoreConfigurationError,
    TransientBackendError,
)
from market_data_store.jobs import JobRunTracker
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer

pytestmark = pytest.mark.asyncio
M1 = Timeframe.parse("1m")
DAY = timedelta(days=1)


def minute_bars(
    n: int,
    *,
    symbol: str = "AAPL",
    source: str = "test",
    price: float = 100.0,
    first: int = 0,
) -> list[Bar]:
    return [
        make_bar(
            source=source,
            symbol=symbol,
            start=T0 + i * M1.delta,
            open=price + i,
            high=price + i + 1,
            low=price + i - 1,
            close=price + i + 0.5,
            volume=1000.0 + i,
            trade_count=None if i % 3 == 0 else i,
            vwap=None if i % 2 == 0 else price + i + 0.25,
        )
        for i in range(first, first + n)
    ]


async def fetch(url: DatabaseUrl, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url.asyncpg_dsn())
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def bar_versions(url: DatabaseUrl) -> list[tuple[Any, ...]]:
    """Each bar row's key, ``ingested_at`` and ``xmin`` (the transaction that last wrote
    it): unchanged when a write left the row alone."""
    rows = await fetch(
        url,
        "SELECT source, symbol, start, ingested_at, xmin::text FROM bars"
        " ORDER BY source, symbol, start",
    )
    return [tuple(row) for row in rows]


def assert_no_secret(exc: BaseException, url: DatabaseUrl) -> None:
    """Neither the error nor the errors it chains show the password of ``url``."""
    password = url.sqlalchemy_url().password
    assert password
    seen: BaseException | None = exc
    while seen is not None:
        assert password not in str(seen)
        assert password not in repr(seen)
        seen = seen.__cause__ or seen.__context__


# --- writes and reads ------------------------------------------------------------------


async def test_is_a_backend(pg_backend: PostgresBackend) -> None:
    assert isinstance(pg_backend, Backend)
    assert pg_backend.name == "postgresql"
    await pg_backend.ping()


async def test_bars_round_trip_to_equal_models(pg_backend: PostgresBackend) -> None:
    aapl, msft = minute_bars(30), minute_bars(20, symbol="MSFT", price=400.0)
    result = await pg_backend.write([*aapl, *msft])
    assert (result.bars, result.total) == (50, 50)
    assert await pg_backend.query_bars("AAPL", "1m", T0, T0 + DAY) == aapl
    assert await pg_backend.query_bars("MSFT", "1m", T0, T0 + DAY) == msft
    assert await pg_backend.query_bars("MSFT", "5m", T0, T0 + DAY) == []
    assert await pg_backend.count("bars") == 50


async def test_replay_changes_nothing(pg_backend: PostgresBackend, pg_url: DatabaseUrl) -> None:
    bars = minute_bars(40)
    await pg_backend.write(bars)
    before = await bar_versions(pg_url)
    result = await pg_backend.write(bars)
    assert result.bars == 40  # rows upserted, whether or not they changed
    assert await pg_backend.count("bars") == 40
    assert await pg_backend.query_bars("AAPL", "1m", T0, T0 + DAY) == bars
    assert await bar_versions(pg_url) == before  # same ingested_at, not even rewritten
    assert pg_backend.stats.upserted == (40 if pg_backend.fast_append else 80)


async def test_newer_revision_replaces_the_old(
    pg_backend: PostgresBackend, pg_url: DatabaseUrl
) -> None:
    bars = minute_bars(5)
    await pg_backend.write(bars)
    before = await bar_versions(pg_url)
    revised = bars[2].model_copy(update={"close": bars[2].high, "volume": 99_999.0})
    assert (await pg_backend.write([revised])).bars == 1
    stored = await pg_backend.query_bars("AAPL", "1m", T0, T0 + DAY)
    assert stored == [*bars[:2], revised, *bars[3:]]
    after = await bar_versions(pg_url)
    assert [a == b for a, b in zip(before, after, strict=True)] == [True, True, False, True, True]
    assert after[2][3] > before[2][3]  # ingested_at moved on for the revised row only


async def test_duplicates_in_one_batch_the_newest_wins(pg_backend: PostgresBackend) -> None:
    first, second, third = (
        make_bar(close=c, revision=r) for r, c in enumerate((185.0, 185.2, 185.4))
    )
    assert (await pg_backend.write([third, first, second])).bars == 1  # a new key
    assert await pg_backend.query_bars("AAPL", "1m", T0, T0 + M1.delta) == [third]
    fourth, fifth = make_bar(close=185.6, revision=4), make_bar(close=185.1, revision=3)
    later = make_bar(start=T0 + M1.delta)
    result = await pg_backend.write([fourth, later, fifth, later])  # a stored key and a new one
    assert result.bars == 2
    assert await pg_backend.query_bars("AAPL", "1m", T0, T0 + DAY) == [fourth, later]


async def test_mixed_batch_of_new_late_and_revised_rows(pg_backend: PostgresBackend) -> None:
    """One batch per series mixing rows below, at and above what is stored."""
    await pg_backend.write(minute_bars(10, first=5))  # minutes 5..14 stored
    late = minute_bars(5)  # 0..4: older than the stored maximum, new keys
    revised = [
        b.model_copy(update={"volume": 1.0, "revision": 1}) for b in minute_bars(3, first=12)
    ]
    new = minute_bars(6, first=15)  # 15..20: appended
    other_symbol = minute_bars(4, symbol="MSFT")
    result = await pg_backend.write([*new, *revised, *late, *other_symbol])
    assert result.bars == 18
    stored = await pg_backend.query_bars("AAPL", "1m", T0, T0 + DAY, limit=100)
    assert stored == [*late, *minute_bars(7, first=5), *revised, *new]
    assert await pg_backend.query_bars("MSFT", "1m", T0, T0 + DAY) == other_symbol
    stats = pg_backend.stats
    if pg_backend.fast_append:  # the first 10 rows and MSFT's 4 were copied straight in;
        # AAPL's batch reaches below its stored maximum: upserted, its 6 new rows too
        assert (stats.appended, stats.upserted, stats.fallbacks) == (14, 14, 0)
    else:
        assert (stats.appended, stats.upserted, stats.fallbacks) == (0, 28, 0)


async def test_trades_quotes_and_signals_round_trip(
    pg_backend: PostgresBackend, pg_url: DatabaseUrl
) -> None:
    trades = random_walk_trades("BTC/USDT", 300, seed=7)
    trades[0] = trades[0].model_copy(
        update={"trade_id": "t-42", "conditions": ("I", "X"), "side": "buy", "exchange": "XNAS"}
    )
    trades[1] = trades[1].model_copy(update={"side": "sell"})
    same_instant = [
        make_trade(ts=T0 + DAY, price=1.0, size=size, ordinal=n)
        for n, size in enumerate((2.0, 3.0))
    ]
    quotes = [
        make_quote(ts=T0 + timedelta(seconds=i), bid=100.0 + i, ask=100.5 + i) for i in range(10)
    ]
    quotes.append(make_quote(ts=T0, exchange="ARCA", bid=99.0, ask=99.5))
    signals = [
        make_signal(metadata={"window": 20, "model": "ema", "ok": True, "x": None, "f": 0.5}),
        make_signal(name="rsi_14", value=-3.5, score=None, ts=T0 + M1.delta),
    ]
    result = await pg_backend.write([*trades, *quotes, *signals, *same_instant, *trades])
    assert (result.trades, result.quotes, result.signals) == (302, 11, 2)
    assert await pg_backend.query_trades("BTC/USDT", T0, T0 + DAY, limit=1000) == trades
    assert await pg_backend.query_trades("AAPL", T0, T0 + 2 * DAY) == same_instant
    by_time = sorted(quotes, key=lambda q: (q.ts, q.exchange or ""))
    assert await pg_backend.query_quotes("AAPL", T0, T0 + DAY) == by_time
    rows = await fetch(
        pg_url,
        "SELECT source, symbol, ts, name, value, score, metadata, as_of FROM signals ORDER BY ts",
    )
    stored = [
        Signal.model_validate(
            dict(row) | {"metadata": json.loads(row["metadata"]), "as_of": from_ns(row["as_of"])}
        )
        for row in rows
    ]
    assert stored == signals
    versions = "SELECT xmin::text FROM trades UNION ALL SELECT xmin::text FROM quotes"
    before = sorted(row[0] for row in await fetch(pg_url, versions))
    await pg_backend.write([*trades, *quotes, *signals])  # replay of every table
    assert sorted(row[0] for row in await fetch(pg_url, versions)) == before
    assert [await pg_backend.count(t) for t in ("trades", "quotes", "signals")] == [302, 11, 2]


async def test_several_tables_and_calls_on_one_connection(pg_url: DatabaseUrl) -> None:
    """Staging tables are per transaction: back-to-back writes of every table on the same
    pooled connection never collide."""
    backend = PostgresBackend(pg_url, min_size=1, max_size=1)
    await backend.open()
    try:
        for round_ in range(3):
            records = [
                *minute_bars(20, first=10 * round_),  # half stored, half new
                *random_walk_trades("ETH/USD", 50, seed=round_ % 2),
                make_quote(ts=T0 + timedelta(seconds=round_)),
                make_signal(value=float(round_)),
            ]
            result = await backend.write(records)
            assert (result.bars, result.trades, result.quotes, result.signals) == (20, 50, 1, 1)
        assert [await backend.count(t) for t in ("bars", "trades", "quotes", "signals")] == [
            40,
            100,
            3,
            1,
        ]
    finally:
        await backend.close()


async def test_concurrent_writers_of_the_same_keys(pg_url: DatabaseUrl) -> None:
    backend = PostgresBackend(pg_url, max_size=4)
    await backend.open()
    try:
        bars = minute_bars(500)
        results = await asyncio.gather(*(backend.write(bars) for _ in range(4)))
        assert [r.bars for r in results] == [500] * 4
        assert await backend.query_bars("AAPL", "1m", T0, T0 + DAY, limit=1000) == bars
    finally:
        await backend.close()


async def test_key_inserted_by_a_concurrent_writer_falls_back_to_upsert(
    pg_url: DatabaseUrl,
) -> None:
    """The append fast path copies rows later than the stored maximum straight into the
    table. When another transaction inserts one of those keys meanwhile, the COPY fails on
    the unique key and the batch is upserted instead, in the same call."""
    backend = PostgresBackend(pg_url)
    await backend.open()
    other = await asyncpg.connect(pg_url.asyncpg_dsn())
    try:
        await backend.write([make_bar()])
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "INSERT INTO bars VALUES ('test', 'AAPL', '1m', $1, 1, 2, 0.5, 1.5, 10, 1, 1.2, now())",
            T0 + M1.delta,
        )
        ours = make_bar(start=T0 + M1.delta)
        later = [make_bar(start=T0 + i * M1.delta) for i in range(2, 6)]
        writing = asyncio.create_task(backend.write([ours, *later]))
        for _ in range(500):  # until our COPY waits for the other transaction's key
            waiting = await fetch(
                pg_url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND application_name = 'market-data-store'",
            )
            if waiting[0][0]:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the backend never waited for the concurrent insert")
        await transaction.commit()
        assert (await writing).bars == 5
        stored = await backend.query_bars("AAPL", "1m", T0, T0 + DAY)
        assert stored == [make_bar(), ours, *later]
        assert (backend.stats.appended, backend.stats.fallbacks) == (0, 1)
        assert backend.stats.upserted == 1 + 5  # the first bar, then the whole batch
    finally:
        await other.close()
        await backend.close()


@pytest_asyncio.fixture
async def fast_backend(pg_url: DatabaseUrl) -> AsyncIterator[PostgresBackend]:
    backend = PostgresBackend(pg_url)
    await backend.open()
    yield backend
    await backend.close()


async def test_appends_probe_each_series_once(fast_backend: PostgresBackend) -> None:
    for first in (0, 10, 20):
        await fast_backend.write([*minute_bars(10, first=first), *minute_bars(10, symbol="X")])
    stats = fast_backend.stats
    assert stats.probed_series == 2  # later batches trust what the backend wrote itself
    assert (stats.appended, stats.upserted, stats.fallbacks) == (40, 20, 0)  # X: replays
    assert await fast_backend.count("bars") == 40


async def test_many_new_series_with_few_rows_are_upserted_without_probes(
    fast_backend: PostgresBackend,
) -> None:
    bars = [make_bar(symbol=f"S{i}") for i in range(10)]
    assert (await fast_backend.write(bars)).bars == 10
    stats = fast_backend.stats
    assert (stats.probed_series, stats.appended, stats.upserted) == (0, 0, 10)
    assert [b.symbol for b in await fast_backend.latest_bars("1m")] == sorted(
        b.symbol for b in bars
    )


async def test_rows_written_by_another_process_are_upserted(
    fast_backend: PostgresBackend, pg_url: DatabaseUrl
) -> None:
    """What the backend knows of a series goes stale when another process writes to it:
    the COPY meets existing keys, the batch is upserted and the series probed again."""
    await fast_backend.write(minute_bars(10))
    other = PostgresBackend(pg_url)
    await other.open()
    try:
        await other.write(minute_bars(10, first=10))
    finally:
        await other.close()
    newer = {"as_of": AS_OF + timedelta(seconds=1)}  # a correction: newer knowledge
    revised = [bar.model_copy(update=newer) for bar in minute_bars(10, first=10, price=50.0)]
    await fast_backend.write(revised)
    assert fast_backend.stats.fallbacks == 1
    await fast_backend.write(minute_bars(10, first=20))
    assert fast_backend.stats.probed_series == 2  # probed again after the fallback
    stored = await fast_backend.query_bars("AAPL", "1m", T0, T0 + DAY, limit=100)
    assert stored == [*minute_bars(10), *revised, *minute_bars(10, first=20)]


async def test_rows_deleted_behind_the_backends_back_are_written_again(
    fast_backend: PostgresBackend,
) -> None:
    bars = minute_bars(10)
    await fast_backend.write(bars)
    assert await fast_backend.delete_before("bars", T0 + DAY) == 10
    assert (await fast_backend.write(bars)).bars == 10  # older than what it wrote: upserted
    assert await fast_backend.query_bars("AAPL", "1m", T0, T0 + DAY) == bars


async def test_paging_through_bars(pg_backend: PostgresBackend) -> None:
    bars = minute_bars(25)
    await pg_backend.write([*reversed(bars), *minute_bars(5, symbol="MSFT")])
    pages: list[list[Bar]] = []
    start = T0
    while page := await pg_backend.query_bars("AAPL", "1m", start, T0 + DAY, limit=10):
        pages.append(page)
        start = page[-1].start + timedelta(microseconds=1)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [b for p in pages for b in p] == bars
    window = await pg_backend.query_bars("AAPL", "1m", T0 + 3 * M1.delta, T0 + 6 * M1.delta)
    assert window == bars[3:6]  # start inclusive, end exclusive


async def test_sources_are_separate_keys(pg_backend: PostgresBackend) -> None:
    a, b = make_bar(source="a"), make_bar(source="b", close=185.0)
    await pg_backend.write([b, a])
    assert await pg_backend.query_bars("AAPL", "1m", T0, T0 + M1.delta) == [a, b]
    assert await pg_backend.query_bars("AAPL", "1m", T0, T0 + M1.delta, source="b") == [b]


async def test_latest_bar_per_symbol(pg_backend: PostgresBackend) -> None:
    await pg_backend.write(
        [
            *minute_bars(5),
            *minute_bars(3, symbol="MSFT"),
            *minute_bars(3, symbol="MSFT", source="other"),
            make_bar(symbol="SPY", timeframe="5m", start=T0 + timedelta(minutes=30)),
        ]
    )
    latest = await pg_backend.latest_bars("1m")
    assert [(b.symbol, b.source, b.start) for b in latest] == [
        ("AAPL", "test", T0 + 4 * M1.delta),
        ("MSFT", "other", T0 + 2 * M1.delta),  # same start: the first source by name
    ]
    assert latest[0] == minute_bars(5)[-1]
    some = await pg_backend.latest_bars("1m", ["MSFT", "NOPE", "AAPL", "MSFT"])
    assert [b.symbol for b in some] == ["AAPL", "MSFT"]
    assert [b.symbol for b in await pg_backend.latest_bars("5m")] == ["SPY"]
    assert await pg_backend.latest_bars("1h") == []
    assert await pg_backend.latest_bars("1m", []) == []


async def test_freshness_per_table_and_symbol(pg_backend: PostgresBackend) -> None:
    trades = random_walk_trades("BTC/USDT", 20, seed=1)
    await pg_backend.write(
        [*minute_bars(4), *minute_bars(2, symbol="MSFT"), *trades, make_quote(), make_signal()]
    )
    fresh = [(f.table, f.symbol, f.latest, f.rows) for f in await pg_backend.freshness()]
    assert fresh == [
        ("bars", "AAPL", T0 + 3 * M1.delta, 4),
        ("bars", "MSFT", T0 + M1.delta, 2),
        ("trades", "BTC/USDT", trades[-1].ts, 20),
        ("quotes", "AAPL", T0, 1),
        ("signals", "AAPL", T0, 1),
    ]


async def test_retention_and_audit(pg_backend: PostgresBackend) -> None:
    await pg_backend.write(minute_bars(10))
    assert await pg_backend.delete_before("bars", T0 + 4 * M1.delta, dry_run=True) == 4
    assert await pg_backend.count("bars") == 10  # a dry run deletes nothing
    assert await pg_backend.delete_before("bars", T0 + 4 * M1.delta) == 4
    assert await pg_backend.count("bars") == 6
    first = make_audit()
    second = make_audit(ts=T0 + M1.delta, action="resume", details={"n": 1, "why": "ok"})
    await pg_backend.record_audit(first)
    await pg_backend.record_audit(second)
    assert await pg_backend.recent_audit() == [second, first]
    assert await pg_backend.recent_audit(limit=1) == [second]


async def test_job_runs(pg_backend: PostgresBackend) -> None:
    tracker = JobRunTracker(pg_backend)
    first = await tracker.start(
        "backfill-aapl", provider="replay", mode="backfill", symbols=["AAPL"]
    )
    second = await tracker.start("live", provider="ibkr", config={"symbols": ["MSFT"]})
    assert await pg_backend.get_job_run(first.id) == first
    assert await pg_backend.get_job_run("nope") is None
    beat = await tracker.heartbeat(first.id, rows_written=10, min_ts=T0, max_ts=T0 + M1.delta)
    assert await pg_backend.get_job_run(first.id) == beat
    done = await tracker.complete(second.id, status="failed", error="provider went away")
    assert await pg_backend.get_job_run(second.id) == done
    assert [r.id for r in await pg_backend.recent_job_runs()] == [second.id, first.id]
    assert await pg_backend.recent_job_runs(job_name="backfill-aapl") == [beat]
    assert await pg_backend.stuck_job_runs(beat.heartbeat_at + timedelta(seconds=1)) == [beat]
    assert await pg_backend.stuck_job_runs(beat.heartbeat_at) == []


async def test_unknown_table_is_a_configuration_error(pg_backend: PostgresBackend) -> None:
    with pytest.raises(StoreConfigurationError, match="unknown table 'nope'"):
        await pg_backend.count("nope")
    with pytest.raises(StoreConfigurationError, match="unknown table"):
        await pg_backend.delete_before("bars; DROP TABLE bars", T0)


async def test_empty_write(pg_backend: PostgresBackend) -> None:
    assert (await pg_backend.write([])).total == 0


# --- configuration and errors ----------------------------------------------------------


async def test_requires_a_postgresql_url() -> None:
    with pytest.raises(StoreConfigurationError, match="needs a postgresql:// URL"):
        PostgresBackend(DatabaseUrl.parse("sqlite:///x.db"))


async def test_not_open_is_transient(pg_url: DatabaseUrl) -> None:
    backend = PostgresBackend(pg_url)
    with pytest.raises(TransientBackendError, match="not open") as excinfo:
        await backend.write([make_bar()])
    assert_no_secret(excinfo.value, pg_url)


async def test_missing_schema_is_permanent(postgres_server: PostgresServer) -> None:
    url = await postgres_server.create_database()
    backend = PostgresBackend(url)
    try:
        await backend.open()
        with pytest.raises(PermanentBackendError, match="bars") as excinfo:
            await backend.write(minute_bars(3))
        assert_no_secret(excinfo.value, url)
        await upgrade(url)
        assert (await backend.write(minute_bars(3))).bars == 3
    finally:
        await backend.close()
        await postgres_server.drop_database(str(url.sqlalchemy_url().database))


async def test_text_with_a_nul_character_is_an_invalid_value(pg_backend: PostgresBackend) -> None:
    tracker = JobRunTracker(pg_backend)
    with pytest.raises(InvalidValueError, match="PostgreSQL") as excinfo:
        await tracker.start("nul\x00name", provider="replay")
    assert isinstance(excinfo.value, PermanentBackendError)  # retrying cannot help
    assert "0x00" in excinfo.value.reason
    assert "postgresql://" not in excinfo.value.reason  # the reason names no server
    assert_no_secret(excinfo.value, pg_backend.url)
    with pytest.raises(InvalidValueError):
        await pg_backend.recent_job_runs(job_name="nul\x00name")
    assert await pg_backend.recent_job_runs() == []  # nothing half-written


async def test_the_service_answers_422_to_a_value_the_database_refuses(
    pg_url: DatabaseUrl, tmp_path: Path
) -> None:
    import httpx

    from market_data_store.service import create_app
    from market_data_store.settings import StoreSettings

    settings = StoreSettings(
        database_url=SecretStr(pg_url.secret()), dead_letter_path=str(tmp_path / "dlq.ndjson")
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
            started = await client.post("/v1/jobs", json={"job_name": "a\x00b", "provider": "x"})
            listed = await client.get("/v1/jobs", params={"job_name": "a\x00b"})
    # what would be stored is refused at the edge, naming the field
    assert started.status_code == 422, started.text
    assert started.json()["errors"][0]["loc"] == ["body", "job_name"]
    assert "NUL character" in started.json()["errors"][0]["msg"]
    # a filter the database refuses is answered 422 with the database's reason
    assert listed.status_code == 422, listed.text
    assert "cannot store a value" in listed.json()["detail"]
    assert "0x00" in listed.json()["detail"]
    for response in (started, listed):
        assert pg_url.secret() not in response.text


async def test_statement_timeout_is_transient(pg_url: DatabaseUrl) -> None:
    backend = PostgresBackend(pg_url, command_timeout=scaled(1.0))  # the pool's, every query
    await backend.open()
    blocker = await asyncpg.connect(pg_url.asyncpg_dsn())
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE bars IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(TransientBackendError, match="TimeoutError"):
                await backend.count("bars")
        assert await backend.count("bars") == 0  # the pool is still usable
    finally:
        await blocker.close()
        await backend.close()


async def test_wrong_password_is_transient_and_not_leaked(
    postgres_server: PostgresServer,
) -> None:
    wrong = "Wrong-pa55word-xyz"
    assert postgres_server.password
    url = DatabaseUrl.parse(postgres_server.url.secret().replace(postgres_server.password, wrong))
    backend = PostgresBackend(url)
    with pytest.raises(TransientBackendError, match="password authentication failed") as exc:
        await backend.open()
    for error in (exc.value, exc.value.__cause__):
        assert wrong not in str(error)
    assert "***" in str(exc.value)


@pytest_asyncio.fixture
async def own_server() -> AsyncIterator[PostgresServer]:
    """A server of this test's own, to stop, crash and restart."""
    with PostgresServer(password="crash-Test-s3cret-41") as server:
        await upgrade(server.url)
        yield server


async def test_migrations_with_a_wrong_password_raise_a_backend_error_without_it(
    postgres_server: PostgresServer,
) -> None:
    wrong = "Wrong-migration-pa55word"
    assert postgres_server.password
    url = DatabaseUrl.parse(postgres_server.url.secret().replace(postgres_server.password, wrong))
    with pytest.raises(BackendError, match="password authentication failed") as excinfo:
        await upgrade(url)
    assert wrong not in str(excinfo.value)
    assert excinfo.value.__cause__ is None  # the driver's exception (and its frames) dropped
    assert excinfo.value.__suppress_context__


async def test_stopped_server_is_transient_and_the_pool_recovers(
    own_server: PostgresServer,
) -> None:
    backend = PostgresBackend(own_server.url, min_size=2, max_size=2)
    await backend.open()
    try:
        await backend.write(minute_bars(10))
        own_server.stop()
        calls = (backend.ping, lambda: backend.write(minute_bars(3)), lambda: backend.count("bars"))
        for call in calls:
            with pytest.raises(TransientBackendError) as excinfo:
                await call()
            assert_no_secret(excinfo.value, own_server.url)
            assert "127.0.0.1" in str(excinfo.value)
        own_server.start()
        await backend.ping()
        assert (await backend.write(minute_bars(5, first=10))).bars == 5
        assert await backend.count("bars") == 15

        own_server.restart()  # every pooled connection dies under the backend's feet
        assert (await backend.write(minute_bars(5, first=15))).bars == 5
        await backend.ping()

        own_server.kill()  # a crash: SIGKILL, then crash recovery at start
        with pytest.raises(TransientBackendError) as excinfo:
            await backend.write(minute_bars(3))
        assert_no_secret(excinfo.value, own_server.url)
        own_server.start()
        assert await backend.query_bars("AAPL", "1m", T0, T0 + DAY, limit=100) == minute_bars(20)
    finally:
        await backend.close()


async def test_open_against_a_stopped_server_is_transient(own_server: PostgresServer) -> None:
    own_server.stop()
    backend = PostgresBackend(own_server.url)
    with pytest.raises(TransientBackendError, match="connect failed") as excinfo:
        await backend.open()
    assert_no_secret(excinfo.value, own_server.url)
    own_server.start()
    await backend.open()
    await backend.ping()
    await backend.close()


@pytest.mark.asyncio
async def test_stores_that_start_together_on_a_new_database_all_migrate_it(
    postgres_server: PostgresServer,
) -> None:
    """N workers starting at once on an empty database (a fresh deployment): each runs the
    migrations, none fails with "relation alembic_version already exists"."""
    url = await postgres_server.create_database()
    try:
        # Without the lock they also deadlock on each other's DDL: bound the wait.
        revisions = await asyncio.wait_for(
            asyncio.gather(*(upgrade(url) for _ in range(4))), timeout=scaled(60)
        )
        assert set(revisions) == {migrations.HEAD}
    finally:
        await postgres_server.drop_database(str(url.sqlalchemy_url().database))

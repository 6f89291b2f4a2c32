"""The version rule under fire, on real SQLite and PostgreSQL: concurrent writers push
random revision sequences of shared keys (ties included) in random order and batch sizes,
through every way into the store (``mds serve`` over HTTP as JSON and Arrow, an in-process
``Store`` with two workers and tiny batches, the backend directly, a store whose writes
fail into the dead-letter file, replayed later), while ``mds serve`` is killed with
SIGKILL and restarted. Afterwards every key holds what the simple model
(``market_data_core.testing.versions.newest``) says, and reads "as known at" times between
phases equal the model's view of what had been written by then.

``MD_STRESS_SCALE`` multiplies keys, versions and rounds (``nox -s stress`` runs it larger;
the default run takes seconds per database)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr

from market_data_core import Bar, Trade, from_ns
from market_data_core.columns import Kind, from_models
from market_data_core.testing import T0, make_bar, make_trade
from market_data_core.testing.versions import key_of, newest
from market_data_store.backends import sqlite as sqlite_backend
from market_data_store.backends.base import Record, WriteResult
from market_data_store.backends.postgres import PostgresBackend
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.client import AsyncStoreClient, StoreClientError
from market_data_store.dlq import FileDeadLetterStore
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import PermanentBackendError, TransientBackendError
from market_data_store.migrate import upgrade
from market_data_store.settings import StoreSettings
from market_data_store.store import Store
from market_data_store.testing import PostgresServer, StoreService

pytestmark = pytest.mark.asyncio

SCALE = max(1, int(os.environ.get("MD_STRESS_SCALE", "1")))
SYMBOLS = [f"S{i}" for i in range(4 * SCALE)]
STARTS = [T0 + timedelta(minutes=m) for m in range(4)]
TRADE_IDS = [f"t{i}" for i in range(5)]
VERSIONS_PER_KEY = 5
PHASES = 3
WRITERS = 6
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


# --- the versions ----------------------------------------------------------------------


def _versions(rng: random.Random) -> list[Record]:
    """Versions of every key: few ``as_of``, revisions and values, so that ties (equal
    version, other values) and repeats happen."""
    base = datetime(2024, 6, 1, tzinfo=UTC)
    out: list[Record] = []
    for symbol in SYMBOLS:
        for start in STARTS:
            for _ in range(VERSIONS_PER_KEY):
                low = float(rng.choice([1, 2]))
                out.append(
                    Bar(
                        source="stress", symbol=symbol, timeframe="1m", start=start,
                        open=low, high=low + 2, low=low, close=low + rng.choice([0, 1, 2]),
                        volume=float(rng.randint(0, 3)),
                        as_of=base + timedelta(seconds=rng.randint(0, 2)),
                        revision=rng.randint(0, 2),
                        reason=rng.choice([None, "late", "correction"]),
                    )
                )  # fmt: skip
        out.extend(
            Trade(
                symbol=symbol, ts=from_ns(1_704_205_800_000_000_007), trade_id=trade_id,
                price=float(rng.randint(1, 3)), size=1.0, ordinal=0,
                as_of=base + timedelta(seconds=rng.randint(0, 2)), revision=rng.randint(0, 1),
            )
            for trade_id in TRADE_IDS
            for _ in range(VERSIONS_PER_KEY)
        )  # fmt: skip
    return out


# --- the ways in -------------------------------------------------------------------------


class _Flaky:
    """A backend whose writes fail for good, one in three at random: the store
    dead-letters those batches, replayed at the end of the phase."""

    def __init__(self, backend: Any, rng: random.Random) -> None:
        self.backend, self.rng = backend, rng
        self.name = backend.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def write(self, records: Sequence[Record]) -> WriteResult:
        if self.rng.random() < 1 / 3:
            msg = "injected: this batch is dead-lettered"
            raise PermanentBackendError(msg)
        return await self.backend.write(records)  # type: ignore[no-any-return]


@dataclass
class Ways:
    """The ways into one database, and what every writer was answered."""

    url: DatabaseUrl
    service: StoreService
    backend: Any
    stores: list[Store]
    dead_letters: Path
    written: list[Record] = field(default_factory=list)

    async def send(self, way: str, batch: list[Record], rng: random.Random) -> None:
        """Write ``batch`` one way until it is acknowledged (retrying as a producer that
        knows delivery is at least once: the rule makes replays harmless)."""
        while True:
            try:
                await self._send_once(way, batch, rng)
                return
            except (StoreClientError, TransientBackendError, OSError):
                await asyncio.sleep(0.05)

    async def _send_once(self, way: str, batch: list[Record], rng: random.Random) -> None:
        if way == "http":
            async with AsyncStoreClient(self.service.url, attempts=3, timeout=30) as client:
                kind = Kind.BARS if isinstance(batch[0], Bar) else Kind.TRADES
                if rng.random() < 0.5:
                    await client.write(batch)
                else:
                    await client.write_arrow(from_models(batch, kind), kind)
        elif way == "backend":
            await self.backend.write(batch)
        else:
            store = self.stores[0 if way == "store" else 1]
            receipt = await store.submit_many(batch)
            await receipt.wait()
            if way == "store" and not receipt.stored:
                raise TransientBackendError(str(receipt))


async def _open(url: DatabaseUrl) -> Any:
    backend: Any = SqliteBackend(url) if url.is_sqlite else PostgresBackend(url)
    await backend.open()
    return backend


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def ways(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Ways]:
    if request.param == "sqlite":
        url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'stress.db'}")
        # batches of 5+ rows take the transaction's time as a literal of the statement
        # (large batches do), smaller ones as a parameter: both in one run
        monkeypatch.setattr(sqlite_backend, "_LITERAL_FROM", 5)
    else:
        url = await postgres_server.create_database()
    await upgrade(url)
    service = StoreService(
        tmp_path,
        database_url=url.secret(),
        env={"MDS_BATCH_SIZE": "1", "MDS_WORKERS": "2", "MDS_LOG_JSON": "true"},
    )
    service.start()
    rng = random.Random(request.node.name)
    stores = []
    for name, flaky in (("store", False), ("dlq", True)):
        settings = StoreSettings(
            database_url=SecretStr(url.secret()),
            dead_letter_path=str(tmp_path / f"{name}.dlq.ndjson"),
            batch_size=rng.randint(1, 4),
            workers=2,
            flush_interval=0.002,
            on_outage="dead_letter",
            retry_attempts=1,
        )
        backend = await _open(url)
        if flaky:
            backend = _Flaky(backend, random.Random(7))
        store = Store(settings, backend=backend)
        await store.start()
        stores.append(store)
    opened = Ways(url, service, await _open(url), stores, tmp_path / "dlq.dlq.ndjson")
    try:
        yield opened
    finally:
        for store in stores:
            await store.stop()
        await opened.backend.close()
        service.stop()


# --- the test ----------------------------------------------------------------------------


async def _held(backend: Any, as_known_at: datetime | None) -> dict[tuple[Any, ...], Any]:
    """Every bar and trade the store holds (or held at ``as_known_at``), by key."""
    held: dict[tuple[Any, ...], Any] = {}
    for symbol in SYMBOLS:
        for read in (
            backend.query_bars(symbol, "1m", *WIDE, limit=10_000, as_known_at=as_known_at),
            backend.query_trades(symbol, *WIDE, limit=10_000, as_known_at=as_known_at),
        ):
            for record in await read:
                assert key_of(record) not in held, record
                held[key_of(record)] = record
    return held


async def _writer(ways: Ways, versions: list[Record], rng: random.Random) -> None:
    rng.shuffle(versions)
    while versions:
        size = rng.randint(1, 9)
        batch, versions[:size] = versions[:size], []
        kind = type(batch[0])
        same = [v for v in batch if type(v) is kind]  # one kind per request
        rest = [v for v in batch if type(v) is not kind]
        versions.extend(rest)
        if rng.random() < 0.5:
            same = _ends_alike(same, rng)
        way = rng.choice(["http", "http", "store", "backend", "dlq"])
        await ways.send(way, same, rng)


def _ends_alike(batch: list[Record], rng: random.Random) -> list[Record]:
    """``batch`` with two versions of one revision first and last, another between (when
    it has them): SQLite writes a column of a batch of ``_LITERAL_FROM`` rows or more as
    a literal when every value agrees, which it checks first and last value first."""
    rows: dict[int, list[Record]] = {}
    for record in batch:
        rows.setdefault(record.revision, []).append(record)
    twice = [same for same in rows.values() if len(same) >= 2]
    if not twice or len(rows) < 2:
        return batch
    first, last = rng.choice(twice)[:2]
    return [first, *(r for r in batch if r is not first and r is not last), last]


async def _kill_and_restart(service: StoreService, after: float) -> None:
    await asyncio.sleep(after)
    await asyncio.to_thread(service.kill)  # SIGKILL: no drain
    await asyncio.to_thread(service.start)


async def test_every_key_holds_the_newest_version_whatever_the_order(ways: Ways) -> None:
    rng = random.Random(f"versions {ways.url.backend} {SCALE}")
    versions = _versions(rng)
    rng.shuffle(versions)
    phases = [versions[i::PHASES] for i in range(PHASES)]
    written: list[Record] = []
    views: list[tuple[datetime, dict[tuple[Any, ...], Any]]] = []
    for number, phase in enumerate(phases):
        shares = [phase[i::WRITERS] for i in range(WRITERS)]
        tasks = [_writer(ways, share, random.Random(rng.random())) for share in shares]
        if number == 1:  # the service dies mid-phase, with requests in flight
            tasks.append(_kill_and_restart(ways.service, rng.uniform(0.05, 0.4)))
        await asyncio.gather(*tasks)
        replayed = await FileDeadLetterStore(ways.dead_letters).replay(ways.backend.write)
        assert replayed.failed == 0
        written.extend(phase)
        model = newest(written)
        await asyncio.sleep(0.01)  # past the clock of the last commit
        quiet_from = datetime.now(UTC)
        await asyncio.sleep(0.05)  # nothing is written meanwhile: any time in here is quiet
        quiet_to = datetime.now(UTC)
        span = (quiet_to - quiet_from) / timedelta(microseconds=1)
        views.extend(
            (quiet_from + timedelta(microseconds=rng.uniform(0, span)), model) for _ in range(3)
        )
    assert await _held(ways.backend, None) == newest(written)
    for when, model in views:
        assert await _held(ways.backend, when) == model, when
    assert await ways.backend.count("bars") == len(SYMBOLS) * len(STARTS)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_write_batch_commits_as_one_transaction(
    database: str, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A batch of bars, new trades and a newer version of a stored trade, whose last row
    the database refuses (a trigger raises on a marker price): nothing of it is stored,
    the stored version stays, and no history row was kept for it."""
    if database == "sqlite":
        url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'one.db'}")
    else:
        url = await postgres_server.create_database()
    await upgrade(url)
    backend = await _open(url)
    try:
        stored = make_trade(trade_id="kept", price=10.0)
        await backend.write([stored])
        await _refuse_price(backend, url, 13.0)
        newer = stored.model_copy(update={"revision": 2, "price": 11.0})
        batch = [
            make_bar(),
            make_trade(trade_id="new"),
            newer,
            make_trade(trade_id="x", price=13.0),
        ]
        with pytest.raises(Exception, match="marker"):
            await backend.write(batch)
        assert await backend.count("bars") == 0
        assert await backend.query_trades("AAPL", *WIDE) == [stored]
        assert (await backend.revisions(Kind.TRADES, "AAPL", *WIDE)).num_rows == 1
    finally:
        await backend.close()


async def _refuse_price(backend: Any, url: DatabaseUrl, price: float) -> None:
    """A trigger that makes the database refuse a trade at ``price`` (after the rows
    before it in the same statement were written)."""
    if url.is_sqlite:
        sql = (
            f"CREATE TRIGGER marker BEFORE INSERT ON trades WHEN NEW.price = {price}"
            " BEGIN SELECT RAISE(ABORT, 'marker'); END"
        )
        await backend._call(lambda: backend._db.execute(sql))
        return
    connection = await asyncpg.connect(url.secret())
    try:
        await connection.execute(
            "CREATE FUNCTION marker() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.price = {price} THEN RAISE EXCEPTION 'marker'; END IF; RETURN NEW; END $$;"
            " CREATE TRIGGER marker BEFORE INSERT ON trades FOR EACH ROW EXECUTE FUNCTION marker()"
        )
    finally:
        await connection.close()

"""Benchmarks of market-data-store's write path: 1,000,000 bars through
``PostgresBackend.write`` and ``SqliteBackend.write``, each next to the raw driver's bulk
insert into the same table, measured in the same run.

Run with ``uv run nox -s bench`` (not part of the default sessions). Every row measures a
rate (rows/s) and the rate of a baseline measured in the same run, and prints their ratio
(``rate / baseline rate``); nothing here passes or fails on timing. Each figure is the best
(fastest) of a few repetitions, subject and baseline alternating.

Workload: 1,000,000 validated ``Bar`` models (built with ``Bar(...)`` before any timing,
as the coordinator receives them), 200 symbols x 5,000 one-minute bars, in time order, in
batches of 5,000 written by 2 concurrent writers: the store's defaults
(``StoreSettings.batch_size`` and ``workers``), i.e. what the write coordinator does. The
PostgreSQL baseline is asyncpg's ``copy_records_to_table`` of tuples built before timing
(ingested_at included) into the same table, truncated between runs, with the same batch
size and number of connections: the floor of any COPY-based path. PostgreSQL runs from the
machine's binaries (``market_data_store.testing.PostgresServer``: fsync off, as in tests).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from _report import Row, print_table

from market_data_core import Bar, Timeframe
from market_data_core.testing import T0
from market_data_store.backends import _rows
from market_data_store.backends.postgres import PostgresBackend
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer

StoreRow = partial(Row, unit="row")

REPEAT = 3
N_BARS = int(os.environ.get("MD_BENCH_STORE_BARS", "1000000"))  # fewer for a quick try
N_SYMBOLS = 200
BATCH = 5_000  # StoreSettings.batch_size
WORKERS = 2  # StoreSettings.workers
PG_SETTINGS = {
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",  # it would run at random points of the timed parts
}
BAR_COLUMNS = (*_rows.BAR_COLUMNS, "ingested_at")


Measure = Callable[[], Awaitable[float]]  # runs once, returns the seconds of the timed part


async def best_times(repeat: int, *measures: Measure) -> list[float]:
    """The best (lowest) seconds of each measure over ``repeat`` rounds; within a round the
    measures run one after the other, so a slow spell of the machine hits them all."""
    times: list[list[float]] = [[] for _ in measures]
    for _ in range(repeat):
        for measure, samples in zip(measures, times, strict=True):
            gc.collect()
            samples.append(await measure())
    return [min(samples) for samples in times]


# --- data -----------------------------------------------------------------------------


AS_OF = T0 + timedelta(days=1)
"""The bars' version, as a file's would be: without one the store gives each write the time
it received it, and a replay would be a newer version rewriting every row."""


def make_bars(n: int) -> list[Bar]:
    minute = Timeframe.parse("1m")
    return [
        Bar(
            source="bench",
            symbol=f"S{i % N_SYMBOLS:03d}",
            timeframe=minute,
            start=T0 + (i // N_SYMBOLS) * minute.delta,
            open=100.0 + i % 7,
            high=101.0 + i % 7,
            low=99.0 + i % 7,
            close=100.5 + i % 7,
            volume=1000.0 + i,
            trade_count=10 + i % 5,
            vwap=100.25 + i % 7,
            as_of=AS_OF,  # a replay of the same bars is the same version: it changes nothing
        )
        for i in range(n)
    ]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def run_workers(
    batches: Sequence[Sequence[Any]], workers: int, write: Callable[[int, Any], Awaitable[Any]]
) -> float:
    """Seconds for ``workers`` tasks to ``write(worker, batch)`` every batch, each task
    taking the next batch when it is done with its last (as the coordinator's workers)."""
    queue: Iterator[Sequence[Any]] = iter(batches)

    async def worker(index: int) -> None:
        for batch in queue:
            await write(index, batch)

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    return time.perf_counter() - start


# --- PostgreSQL ------------------------------------------------------------------------


class PostgresBench:
    def __init__(self, url: DatabaseUrl, bars: Sequence[Bar]) -> None:
        self.url = url
        self.batches = chunks(bars, BATCH)
        now = datetime.now(UTC)
        tuples = [(*_rows.bar_row(bar), now) for bar in bars]
        self.tuple_batches = chunks(tuples, BATCH)
        self.n = len(bars)

    async def connect(self) -> Any:
        return await asyncpg.connect(self.url.asyncpg_dsn())

    async def truncate(self) -> None:
        admin = await self.connect()
        try:
            await admin.execute("TRUNCATE bars")
            await admin.execute("CHECKPOINT")  # every run starts from the same state
        finally:
            await admin.close()

    async def check(self, *, since: datetime | None = None) -> datetime:
        """Fail unless every bar is stored; with ``since``, unless no row was rewritten
        after it. Returns the newest ``ingested_at``."""
        admin = await self.connect()
        try:
            count, newest = await admin.fetchrow("SELECT count(*), max(ingested_at) FROM bars")
        finally:
            await admin.close()
        if count != self.n:
            msg = f"expected {self.n} bars in PostgreSQL, found {count}"
            raise RuntimeError(msg)
        if since is not None and newest != since:
            msg = f"a replay rewrote rows: ingested_at moved from {since} to {newest}"
            raise RuntimeError(msg)
        return newest  # type: ignore[no-any-return]

    def raw_copy(self, workers: int) -> Measure:
        async def measure() -> float:
            await self.truncate()
            connections = [await self.connect() for _ in range(workers)]
            try:

                async def copy(index: int, batch: Sequence[tuple[Any, ...]]) -> None:
                    await connections[index].copy_records_to_table(
                        "bars", records=batch, columns=BAR_COLUMNS
                    )

                seconds = await run_workers(self.tuple_batches, workers, copy)
            finally:
                for connection in connections:
                    await connection.close()
            await self.check()
            return seconds

        return measure

    def write(self, workers: int, *, fast_append: bool = True, replay: bool = False) -> Measure:
        """``PostgresBackend.write`` of every batch; ``replay``: into the table as the
        previous measure left it (all of these bars), else into an empty one."""

        async def measure() -> float:
            before = None if not replay else await self.check()
            if not replay:
                await self.truncate()
            backend = PostgresBackend(
                self.url, min_size=workers, max_size=workers, fast_append=fast_append
            )
            await backend.open()
            try:
                seconds = await run_workers(
                    self.batches, workers, lambda _, batch: backend.write(batch)
                )
            finally:
                await backend.close()
            await self.check(since=before)
            return seconds

        return measure


async def bench_postgres(bars: Sequence[Bar]) -> list[Row]:
    with PostgresServer(settings=PG_SETTINGS) as server:
        await upgrade(server.url)
        pg = PostgresBench(server.url, bars)
        raw2, append2, replay2, raw1, append1, upsert2 = await best_times(
            REPEAT,
            pg.raw_copy(WORKERS),
            pg.write(WORKERS),
            pg.write(WORKERS, replay=True),
            pg.raw_copy(1),
            pg.write(1),
            pg.write(WORKERS, fast_append=False),
        )
    n, batching = pg.n, f"{BATCH // 1000}k batches"
    copy2 = f"raw COPY x{WORKERS}"
    subject = f"PostgresBackend.write of validated Bars in {batching} by {WORKERS} workers"
    baseline = f"asyncpg copy_records_to_table of prebuilt tuples, {batching}, {WORKERS} conns"
    return [
        StoreRow(
            f"pg write x{WORKERS}, append",
            n,
            append2,
            copy2,
            raw2,
            subject + " into an empty table",
            baseline,
            "every batch is later than what is stored (the first batch probes each series"
            "' newest time, later ones know it), so it is COPYed straight into bars; the "
            "difference is building and deduplicating the rows in Python, now() and a "
            "savepoint per batch",
        ),
        StoreRow(
            f"pg write x{WORKERS}, replay",
            n,
            replay2,
            copy2,
            raw2,
            subject + " again (every key exists, no value changes)",
            baseline + " into an empty table",
            "every row goes through the staging table and INSERT ... ON CONFLICT DO UPDATE "
            "WHERE values differ: an index lookup and a row lock per row, nothing rewritten "
            "(checked: ingested_at unchanged)",
        ),
        StoreRow(
            "pg write x1, append",
            n,
            append1,
            "raw COPY x1",
            raw1,
            f"PostgresBackend.write in {batching} by 1 worker",
            f"copy_records_to_table, {batching}, 1 connection",
            "with one writer the Python work of a batch cannot overlap the server's work "
            "on another batch",
        ),
        StoreRow(
            f"pg upsert-only x{WORKERS}, append",
            n,
            upsert2,
            copy2,
            raw2,
            "PostgresBackend(fast_append=False).write, the same batches into an empty table",
            baseline,
            "without the append fast path every row is COPYed to staging then inserted "
            "with ON CONFLICT (a speculative insertion per row): what the fast path saves",
        ),
    ]


# --- SQLite ----------------------------------------------------------------------------


class SqliteBench:
    def __init__(self, directory: Path, bars: Sequence[Bar]) -> None:
        self.path = directory / "bench.db"
        self.url = DatabaseUrl.parse(f"sqlite:///{self.path}")
        self.batches = chunks(bars, BATCH)
        now = _rows.to_micros(datetime.now(UTC))
        tuples = [(*_rows.bar_row(bar, _rows.to_micros), now) for bar in bars]
        self.tuple_batches = chunks(tuples, BATCH)
        self.n = len(bars)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")  # as SqliteBackend
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def reset(self) -> None:
        connection = self._connect()
        try:
            connection.execute("DELETE FROM bars")
            connection.execute("VACUUM")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()

    def check(self) -> None:
        connection = self._connect()
        try:
            (count,) = connection.execute("SELECT count(*) FROM bars").fetchone()
        finally:
            connection.close()
        if count != self.n:
            msg = f"expected {self.n} bars in SQLite, found {count}"
            raise RuntimeError(msg)

    def raw_insert(self) -> Measure:
        marks = ", ".join("?" for _ in BAR_COLUMNS)
        sql = f"INSERT INTO bars ({', '.join(BAR_COLUMNS)}) VALUES ({marks})"  # noqa: S608 - fixed names

        async def measure() -> float:
            self.reset()
            connection = self._connect()
            try:
                start = time.perf_counter()
                for batch in self.tuple_batches:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.executemany(sql, batch)
                    connection.execute("COMMIT")
                seconds = time.perf_counter() - start
            finally:
                connection.close()
            self.check()
            return seconds

        return measure

    def write(self, *, replay: bool = False) -> Measure:
        async def measure() -> float:
            if not replay:
                self.reset()
            backend = SqliteBackend(self.url)
            await backend.open()
            try:
                seconds = await run_workers(self.batches, 1, lambda _, batch: backend.write(batch))
            finally:
                await backend.close()
            self.check()
            return seconds

        return measure


async def bench_sqlite(bars: Sequence[Bar]) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="md-bench-sqlite-") as directory:
        lite = SqliteBench(Path(directory), bars)
        await upgrade(lite.url)
        raw, append, replay = await best_times(
            REPEAT, lite.raw_insert(), lite.write(), lite.write(replay=True)
        )
    batching = f"{BATCH // 1000}k rows per transaction"
    baseline = f"sqlite3 executemany INSERT of prebuilt tuples, {batching}"
    return [
        StoreRow(
            "sqlite write, append",
            lite.n,
            append,
            "raw executemany",
            raw,
            f"SqliteBackend.write of validated Bars in {BATCH // 1000}k batches into an "
            "empty table",
            baseline,
            "the backend builds the rows in Python, upserts (ON CONFLICT DO UPDATE) and "
            "runs on its database thread",
        ),
        StoreRow(
            "sqlite write, replay",
            lite.n,
            replay,
            "raw executemany",
            raw,
            "SqliteBackend.write of the same bars again (every key exists)",
            baseline + " into an empty table",
            "a conflict per row, resolved by a primary-key lookup and no write",
        ),
    ]


# --- report ----------------------------------------------------------------------------


async def run() -> list[Row]:
    bars = make_bars(N_BARS)
    # The million models live for the whole run; freeze them out of the cyclic GC, whose
    # full collections would otherwise walk them during the timed parts (the coordinator
    # never holds more than a few batches).
    gc.collect()
    gc.freeze()
    return [*await bench_postgres(bars), *await bench_sqlite(bars)]


def main() -> None:
    started = time.perf_counter()
    print(  # noqa: T201
        f"market-data-store benchmarks, Python {sys.version.split()[0]}: best of {REPEAT} runs;"
        f" {N_BARS:,} bars of {N_SYMBOLS} symbols, {BATCH:,} per batch; ratio = rate /"
        " baseline rate, both measured in this run\n",
        flush=True,
    )
    rows = asyncio.run(run())
    print_table(rows, unit="rows")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")  # noqa: T201


if __name__ == "__main__":
    main()

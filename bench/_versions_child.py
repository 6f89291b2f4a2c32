"""One measurement of the store's write path, in a process of its own (run by
``bench_versions.py`` under the interpreter of the tree being measured: this one, or the
commit before versions). It uses only what both trees have: ``Bar`` models, a backend's
``write``, ``upgrade``. Prints one JSON line: the seconds of the timed part and this
process's own peak RSS.

    python _versions_child.py DATABASE_URL SCENARIO N

SCENARIO: ``append`` (N bars into an empty table), ``replay`` (the same N bars written
twice; the second time is timed: every key is stored, nothing changes), ``revise`` (then
every bar again with another close and, where the tree has versions, a newer one: every
row replaced; the cost of keeping history where the tree keeps it), ``read`` (after the
append, every bar read back as models, symbol by symbol: the current state, which must not
get slower for keeping history; a revision of every bar first, so that history is there).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from market_data_core import Bar, Timeframe
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade

BATCH, WORKERS, SYMBOLS = 5_000, 2, 200  # the store's defaults (batch_size, workers)
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
VERSIONED = "as_of" in Bar.model_fields


def bars(n: int, *, revised: bool = False) -> list[Bar]:
    minute = Timeframe.parse("1m")
    extra: dict[str, Any] = {}
    if VERSIONED:  # a pipeline's bars carry their version
        extra = {"as_of": T0 + timedelta(days=1 + revised), "revision": 1}
    return [
        Bar(
            source="bench", symbol=f"S{i % SYMBOLS:03d}", timeframe=minute,
            start=T0 + (i // SYMBOLS) * minute.delta, open=100.0 + i % 7, high=101.0 + i % 7,
            low=99.0 + i % 7, close=100.5 + i % 7 - 0.25 * revised, volume=1000.0 + i,
            trade_count=10 + i % 5, vwap=100.25 + i % 7, **extra,
        )
        for i in range(n)
    ]  # fmt: skip


def make_backend(url: DatabaseUrl) -> Any:
    if url.is_sqlite:
        from market_data_store.backends.sqlite import SqliteBackend  # noqa: PLC0415

        return SqliteBackend(url)
    from market_data_store.backends.postgres import PostgresBackend  # noqa: PLC0415

    return PostgresBackend(url, min_size=WORKERS, max_size=WORKERS)


async def write_all(backend: Any, items: Sequence[Bar]) -> float:
    batches = iter([items[i : i + BATCH] for i in range(0, len(items), BATCH)])

    async def worker() -> None:
        for batch in batches:
            await backend.write(batch)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return time.perf_counter() - start


async def read_all(backend: Any) -> float:
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=3650)
    began = time.perf_counter()
    got = 0
    for i in range(SYMBOLS):
        got += len(await backend.query_bars(f"S{i:03d}", "1m", start, end, limit=10_000_000))
    seconds = time.perf_counter() - began
    if got * 1 == 0:
        msg = "read nothing back"
        raise RuntimeError(msg)
    return seconds


async def main(url_text: str, scenario: str, n: int) -> None:
    url = DatabaseUrl.parse(url_text)
    await upgrade(url)
    first = bars(n)
    backend = make_backend(url)
    await backend.open()
    try:
        if scenario == "append":
            seconds = await write_all(backend, first)
        elif scenario == "read":
            await write_all(backend, first)
            await write_all(backend, bars(n, revised=True))
            seconds = await read_all(backend)
        else:
            await write_all(backend, first)
            second = first if scenario == "replay" else bars(n, revised=True)
            seconds = await write_all(backend, second)
        stored = await backend.count("bars")
    finally:
        await backend.close()
    if stored != n:
        msg = f"expected {n} bars stored, found {stored}"
        raise RuntimeError(msg)
    print(json.dumps({"seconds": seconds, "peak_rss": peak_rss()}))  # noqa: T201


def peak_rss() -> int:
    """This process's own peak RSS in bytes (``VmHWM``: since its ``exec``; ``ru_maxrss``
    would carry the parent's high-water mark over the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))

"""Benchmark of reads: 1M trades of one symbol from PostgreSQL into a pandas and a polars
DataFrame with the read API, next to ADBC's ``fetch_arrow_table`` of the same query turned
into the same kind of DataFrame, measured in the same run; and a streaming export whose
peak memory must not grow with the row count.

Subjects and baselines are whole processes of this interpreter (the bench session's, which
has pandas and polars: both sides import the same installed packages), each repetition a
fresh process (``bench/_reads_child.py``), alternating, the first included. Figures:
medians of ``REPEAT`` with their spread (min-max), the seconds inside the process (after
the imports) next to the whole process, and each child's own peak memory.

- ``read -> pandas`` vs ``ADBC -> pandas``; ``read -> polars`` vs ``ADBC -> polars``;
- ``Store.query_table -> pandas`` (asyncpg, the path the read API replaces) vs ADBC;
- ``export_dataset`` of ``EXPORT_SMALL`` and ``EXPORT_LARGE`` trades (one symbol over days,
  one file per day): the peak memory of both, and their ratio (flat: about 1).

``MD_BENCH_READ_TRADES`` (default 1,000,000), ``MD_BENCH_EXPORT_ROWS`` (default 5,000,000),
``MD_BENCH_REPEAT`` (default 5).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from _process import BENCH, Measured, compile_bytecode
from _report import Row, Sample, print_table

from market_data_core.columns import TIMESTAMP, Kind
from market_data_store.backends.postgres import PostgresBackend
from market_data_store.columnar import conform
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer

REPEAT = int(os.environ.get("MD_BENCH_REPEAT", "5"))
N_READ = int(os.environ.get("MD_BENCH_READ_TRADES", "1000000"))
EXPORT_LARGE = int(os.environ.get("MD_BENCH_EXPORT_ROWS", "5000000"))
EXPORT_SMALL = EXPORT_LARGE // 5
PG_SETTINGS = {"shared_buffers": "256MB", "max_wal_size": "4GB", "autovacuum": "off"}
SYMBOL = "BTC/USDT"


def trades(n: int, seed: int = 1) -> pa.Table:
    """``n`` trades of one symbol, nanosecond times over five days, in time order."""
    rng = np.random.default_rng(seed)
    start = 1_704_153_600_000_000_000  # 2024-01-02T00:00:00Z
    ts = start + np.sort(rng.integers(0, 5 * 86_400 * 1_000_000_000, n))
    return pa.table({
        "symbol": pa.array([SYMBOL] * n),
        "ts": pa.array(ts, TIMESTAMP),
        "price": pa.array(100 + np.cumsum(rng.normal(0, 0.01, n))),
        "size": pa.array(rng.integers(1, 500, n).astype(np.float64)),
        "ordinal": pa.array(np.arange(n)),
    })  # fmt: skip


async def fill(url: DatabaseUrl, n: int) -> None:
    await upgrade(url)
    backend = PostgresBackend(url)
    await backend.open()
    everything = trades(n)
    try:
        for start in range(0, n, 500_000):
            part = conform(everything.slice(start, 500_000), Kind.TRADES)
            await backend.write_table(Kind.TRADES, part)
    finally:
        await backend.close()


def child(
    what: str, url: str, env: dict[str, str], tmp: Path, *rest: str
) -> tuple[float, float, float]:
    """Whole-process seconds, in-process seconds and peak MiB of one child."""

    peak = tmp / "peak.kib"
    peak.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH / "_peak.py"), str(peak), str(BENCH / "_reads_child.py"),
         what, url, SYMBOL, *rest],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{what} failed:\n{done.stderr[-3000:]}")
    inside, _rows = done.stdout.split()[-2:]  # the last line: seconds and rows
    return seconds, float(inside), int(peak.read_text()) / 1024


def main() -> None:
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compile_bytecode(env)
    with tempfile.TemporaryDirectory() as tmp_name, PostgresServer(settings=PG_SETTINGS) as pg:
        tmp = Path(tmp_name)
        read_url = asyncio.run(pg.create_database("reads"))
        asyncio.run(fill(read_url, N_READ))
        url = read_url.secret()
        names = ("adbc-pandas", "read-pandas", "adbc-polars", "read-polars", "query-table")
        measured = {name: Measured() for name in names}
        for _ in range(REPEAT):
            for name in names:
                whole, inside, peak = child(name, url, env, tmp)
                measured[name].process.append(whole)
                measured[name].inside.append(inside)
                measured[name].peak.append(peak)
        rows = []
        for name, base, what in (
            ("read-pandas", "adbc-pandas", "pandas"),
            ("read-polars", "adbc-polars", "polars"),
            ("query-table", "adbc-pandas", "pandas"),
        ):
            subject, baseline = measured[name], measured[base]
            for scope, pick in (("whole process", "process"), ("in process", "inside")):
                rows.append(Row(
                    f"{name} ({scope})", N_READ,
                    Sample(tuple(getattr(subject, pick))).median,
                    f"{base} ({scope})", Sample(tuple(getattr(baseline, pick))).median,
                    f"reading {N_READ:,} trades of one symbol from PostgreSQL into {what}",
                    f"ADBC's fetch_arrow_table of the same query into {what}",
                    f"{name}: {subject.text()}; {base}: {baseline.text()}", "row",
                ))  # fmt: skip
        print_table(rows, unit="rows")

        peaks: dict[int, Measured] = {}
        for n in (EXPORT_SMALL, EXPORT_LARGE):
            export_url = asyncio.run(pg.create_database(f"export_{n}"))
            asyncio.run(fill(export_url, n))
            peaks[n] = Measured()
            for repetition in range(max(2, REPEAT // 2)):
                out = tmp / f"dataset-{n}-{repetition}"
                whole, inside, peak = child("export", export_url.secret(), env, tmp, str(out))
                peaks[n].process.append(whole)
                peaks[n].inside.append(inside)
                peaks[n].peak.append(peak)
        small, large = (Sample(tuple(peaks[n].peak)).median for n in (EXPORT_SMALL, EXPORT_LARGE))
        print(  # noqa: T201
            f"\nexport_dataset, {EXPORT_SMALL:,} trades: {peaks[EXPORT_SMALL].text()}\n"
            f"export_dataset, {EXPORT_LARGE:,} trades: {peaks[EXPORT_LARGE].text()}\n"
            f"peak memory {EXPORT_LARGE:,} / {EXPORT_SMALL:,} trades: {large / small:.2f}x"
            f" for {EXPORT_LARGE / EXPORT_SMALL:.0f}x the rows (flat is 1.00x)\n"
            f"Every process ran on {sys.executable}; medians of {REPEAT} repetitions"
            " (exports: fewer), the first included, spread min-max."
        )


if __name__ == "__main__":
    main()

"""The baseline of ``bench_pipeline``: one Python loop over every trade of the Parquet file,
1m bars in a dict. ``python _loop.py FILE`` prints the number of bars and the seconds spent
(the in-process figure); it imports pyarrow only, so that its whole process is comparable."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MINUTE_NS = 60_000_000_000


def hand_written_loop(path: Path | str) -> int:
    """The baseline: one Python loop over every trade, bars in a dict."""
    table = pq.read_table(path)
    bars: dict[tuple[str, int], list[Any]] = {}
    symbols = table.column("symbol").to_pylist()
    ts = table.column("ts").cast(pa.int64()).to_pylist()
    prices = table.column("price").to_pylist()
    sizes = table.column("size").to_pylist()
    for symbol, t, price, size in zip(symbols, ts, prices, sizes, strict=True):
        key = (symbol, t - t % MINUTE_NS)
        bar = bars.get(key)
        if bar is None:
            bars[key] = [price, price, price, price, size, 1, price * size]
        else:
            bar[1] = max(bar[1], price)
            bar[2] = min(bar[2], price)
            bar[3] = price
            bar[4] += size
            bar[5] += 1
            bar[6] += price * size
    return len(bars)


if __name__ == "__main__":
    started = time.perf_counter()
    count = hand_written_loop(sys.argv[1])
    print(count, time.perf_counter() - started)  # noqa: T201

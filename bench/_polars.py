"""The second baseline of ``bench_pipeline``: polars' lazy query of the same 1m bars (group
by symbol and minute; first, max, min, last, sum, count, VWAP; polars keeps the file's
order within a group). ``python _polars.py FILE`` prints the number of bars and the seconds
spent (the in-process figure)."""

from __future__ import annotations

import sys
import time

import polars as pl


def bars(path: str) -> int:
    price, size = pl.col("price"), pl.col("size")
    frame = (
        pl.scan_parquet(path)
        .group_by("symbol", pl.col("ts").dt.truncate("1m").alias("start"))
        .agg(
            price.first().alias("open"),
            price.max().alias("high"),
            price.min().alias("low"),
            price.last().alias("close"),
            size.sum().alias("volume"),
            pl.len().alias("trade_count"),
            ((price * size).sum() / size.sum()).alias("vwap"),
        )
        .collect()
    )
    return frame.height


if __name__ == "__main__":
    started = time.perf_counter()
    count = bars(sys.argv[1])
    print(count, time.perf_counter() - started)  # noqa: T201

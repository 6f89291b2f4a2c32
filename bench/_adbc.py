"""ADBC's ``adbc_ingest`` of the bench's trades file into the store's ``trades`` table: the
baseline of ``bench_ingest``, kept apart so that its whole process imports no more than it
needs (pyarrow and the driver). ``python _adbc.py DRIVER URL FILE`` prints the seconds spent
reading the file and appending it, committed (the in-process figure)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def adbc_ingest(url: str, parquet: Path | str, driver: str) -> float:
    """Read the file and append it to the empty trades table in the store's layout (``ts``
    in microseconds and ``ts_nanos``, ``''`` for the absent venue and trade id), committed."""
    start = time.perf_counter()
    table = pq.read_table(parquet)
    n = table.num_rows
    nanos = pc.cast(table.column("ts"), pa.int64())
    micros = pc.divide(nanos, pa.scalar(1000, pa.int64()))
    below = pc.subtract(nanos, pc.multiply(micros, pa.scalar(1000, pa.int64())))
    as_of = time.time_ns()
    stored = pa.table(
        {
            "symbol": table.column("symbol"),
            "ts": pc.cast(micros, pa.timestamp("us", tz="UTC")),
            "ts_nanos": pc.cast(below, pa.int16()),
            "exchange": pa.repeat("", n),
            "trade_id": pa.repeat("", n),
            "price": table.column("price"),
            "size": table.column("size"),
            "as_of": pa.repeat(pa.scalar(as_of, pa.int64()), n),
            "ingested_at": pa.repeat(pa.scalar(as_of // 1000, pa.timestamp("us", tz="UTC")), n),
        }
    )
    if driver == "postgresql":
        from adbc_driver_postgresql import dbapi  # noqa: PLC0415
    else:
        from adbc_driver_sqlite import dbapi  # type: ignore[no-redef]  # noqa: PLC0415

        for i, name in ((1, "ts"), (8, "ingested_at")):
            stored = stored.set_column(i, name, pc.cast(stored.column(i), pa.int64()))
    with dbapi.connect(url) as connection:
        with connection.cursor() as cursor:
            cursor.adbc_ingest("trades", stored, mode="append")
        connection.commit()
    return time.perf_counter() - start


if __name__ == "__main__":
    print(adbc_ingest(sys.argv[2], sys.argv[3], sys.argv[1]))  # noqa: T201

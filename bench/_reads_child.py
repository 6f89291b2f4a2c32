"""One read of the ``bench_reads`` benchmark, in a process of its own: ``python
_reads_child.py WHAT URL SYMBOL [DIR]`` prints the seconds spent reading (the in-process
figure: after the imports, which the whole-process figure includes) and the rows read.

- ``adbc-pandas`` / ``adbc-polars``: the baseline, ADBC's ``fetch_arrow_table`` of the
  query the store runs (its table's columns, the symbol, its order), to a DataFrame;
- ``read-pandas`` / ``read-polars``: ``market_data_store.connect(url).trades(symbol)``;
- ``query-table``: the store's older ``Store.query_table`` (asyncpg, a Record per row);
- ``export``: ``export_dataset(url, DIR)`` of every trade.
"""

# ruff: noqa: PLC0415, S608 - each subject imports only what it needs; SQL of the layouts
from __future__ import annotations

import asyncio
import importlib
import sys
import time
from datetime import UTC, datetime


def adbc(url: str, symbol: str, frame: str) -> tuple[float, int]:
    from adbc_driver_postgresql import dbapi

    from market_data_store.backends._layout import LAYOUTS, ORDER
    from market_data_store.read.query import literal

    convert = importlib.import_module(frame)
    columns = ", ".join(f'"{c}"' for c in LAYOUTS["trades"].columns)  # type: ignore[index]
    sql = (
        f"SELECT {columns} FROM trades WHERE symbol = {literal(symbol)}"
        f' ORDER BY "symbol", {ORDER["trades"]}'  # type: ignore[index]
    )
    start = time.perf_counter()
    with dbapi.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        table = cursor.fetch_arrow_table()
    rows = len(table.to_pandas()) if frame == "pandas" else convert.from_arrow(table).height
    return time.perf_counter() - start, rows


def read(url: str, symbol: str, frame: str) -> tuple[float, int]:
    from adbc_driver_postgresql import dbapi  # noqa: F401 - imported before the clock, as ADBC's

    import market_data_store as mds
    import market_data_store.read  # the module, not its lazy names

    importlib.import_module(frame)
    start = time.perf_counter()
    selection = mds.connect(url).trades(symbol)
    rows = len(selection.to_pandas()) if frame == "pandas" else selection.to_polars().height
    return time.perf_counter() - start, rows


def query_table(url: str, symbol: str) -> tuple[float, int]:
    import pandas  # noqa: F401 - before the clock, as on the other side
    from pydantic import SecretStr

    from market_data_store import Store, StoreSettings

    async def run() -> tuple[float, int]:
        store = Store(StoreSettings(database_url=SecretStr(url)))
        await store.start()
        try:
            start = time.perf_counter()
            table = await store.query_table(
                "trades", symbol, datetime(1970, 1, 2, tzinfo=UTC),
                datetime(2100, 1, 1, tzinfo=UTC), limit=100_000_000,
            )  # fmt: skip
            return time.perf_counter() - start, len(table.to_pandas())
        finally:
            await store.stop()

    return asyncio.run(run())


def export(url: str, directory: str) -> tuple[float, int]:
    from market_data_store.read.export import export_dataset

    start = time.perf_counter()
    rows = export_dataset(url, directory, kinds=["trades"]).rows
    return time.perf_counter() - start, rows


def main() -> None:
    what, url, symbol, *rest = sys.argv[1:]
    if what.startswith("adbc-"):
        seconds, rows = adbc(url, symbol, what.removeprefix("adbc-"))
    elif what.startswith("read-"):
        seconds, rows = read(url, symbol, what.removeprefix("read-"))
    elif what == "query-table":
        seconds, rows = query_table(url, symbol)
    else:
        seconds, rows = export(url, rest[0])
    print(seconds, rows)  # noqa: T201


if __name__ == "__main__":
    main()

"""Reading market data back: one line from a store's URL to pandas, polars or Arrow.

``connect(url)`` (blocking) and ``connect_async(url)`` (asyncio) open an SQLite file, a
PostgreSQL database or the store's HTTP service, the same calls either way; see
``reader`` for the API, ``sources`` for how each store is read, ``asof`` for as-of joins,
and ``docs/reading.md`` for examples.
"""

from market_data_store.exceptions import ReadError
from market_data_store.read.asof import asof_join
from market_data_store.read.query import ReadQuery
from market_data_store.read.reader import (
    AsyncReader,
    AsyncSelection,
    Reader,
    Selection,
    connect,
    connect_async,
)
from market_data_store.read.sources import open_source

__all__ = [
    "AsyncReader",
    "AsyncSelection",
    "ReadError",
    "ReadQuery",
    "Reader",
    "Selection",
    "asof_join",
    "connect",
    "connect_async",
    "open_source",
]

"""Market data as Arrow tables: the store's columnar schemas, shared by its write and read
paths.

One schema per kind of record, with the field names and types of the pipeline's batches
(``market_data_pipeline.records``), so a pipeline table goes into the store as it is:
timestamps are ``timestamp[us, UTC]``, prices and sizes ``float64``, free text ``string``.
Signals carry their ``metadata`` as a JSON object in a string column.

A table of one of these kinds converts losslessly to and from core models
(:func:`to_models`); the store never needs the models on its columnar path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import pyarrow as pa

__all__ = [
    "BARS",
    "QUOTES",
    "SCHEMAS",
    "SIGNALS",
    "TIMESTAMP",
    "TRADES",
    "Kind",
    "empty",
]

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")


class Kind(StrEnum):
    """What a table holds: the name of the store's table for it."""

    BARS = "bars"
    TRADES = "trades"
    QUOTES = "quotes"
    SIGNALS = "signals"


TRADES: Final = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("size", pa.float64(), nullable=False),
        pa.field("exchange", pa.string()),
        pa.field("trade_id", pa.string()),
        pa.field("side", pa.string()),
        pa.field("conditions", pa.list_(pa.string())),
    ]
)
QUOTES: Final = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),
        pa.field("bid", pa.float64(), nullable=False),
        pa.field("ask", pa.float64(), nullable=False),
        pa.field("bid_size", pa.float64(), nullable=False),
        pa.field("ask_size", pa.float64(), nullable=False),
        pa.field("exchange", pa.string()),
    ]
)
BARS: Final = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("timeframe", pa.string(), nullable=False),
        pa.field("start", TIMESTAMP, nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("trade_count", pa.int64()),
        pa.field("vwap", pa.float64()),
    ]
)
SIGNALS: Final = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("metadata", pa.string()),  # a JSON object; null means {}
    ]
)
SCHEMAS: Final = {Kind.BARS: BARS, Kind.TRADES: TRADES, Kind.QUOTES: QUOTES, Kind.SIGNALS: SIGNALS}


def empty(kind: Kind | str) -> pa.Table:
    """A table of ``kind`` with no rows."""
    return SCHEMAS[Kind(kind)].empty_table()

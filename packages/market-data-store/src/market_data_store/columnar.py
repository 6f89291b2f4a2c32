"""Market data as Arrow tables in the store.

The columnar contract is core's (``market_data_core.columns``: kinds, schemas with
nanosecond timestamps, ``conform``, ``kind_of``, models), re-exported here. The store adds
what it needs on its write path:

- :class:`ArrowRecords`: the name this module gives ``market_data_store.chunks.ArrowChunk``,
  a conformed table of one kind on its way through the write coordinator, sliced without
  copying, never turned into models unless a record must be dead-lettered;
- :func:`prepare`: where records enter the store (``Store.submit*``, the HTTP ingest), what
  came without a version or an ordinal gets one: ``as_of`` = the time the store received
  it (:class:`Stamper`: one nanosecond apart in the order given, never going back), and
  ticks without a venue id their ordinal among the call's ticks (``Ordinals``);
- :func:`encode`: a table as an Arrow IPC stream, a Parquet file or CSV (HTTP bodies).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from market_data_core.columns import (
    BARS,
    QUOTES,
    SCHEMAS,
    SIGNALS,
    TIMESTAMP,
    TRADES,
    ColumnError,
    Kind,
    Ordinals,
    conform,
    empty,
    from_models,
    kind_of,
    to_models,
)
from market_data_store.chunks import KIND_OF_MODEL, ArrowChunk, Batch

ArrowRecords = ArrowChunk
"""A conformed table of one kind in the write path (see ``market_data_store.chunks``)."""

__all__ = [
    "BARS",
    "QUOTES",
    "SCHEMAS",
    "SIGNALS",
    "TIMESTAMP",
    "TRADES",
    "ArrowRecords",
    "ColumnError",
    "Kind",
    "Stamper",
    "conform",
    "empty",
    "encode",
    "from_models",
    "kind_of",
    "prepare",
    "to_models",
]


def encode(table: pa.Table, form: str) -> bytes:
    """``table`` as an Arrow IPC stream (``arrow``), a Parquet file (``parquet``) or CSV
    (``csv``: a trade's conditions as JSON text, since CSV has no lists; timestamps in ISO
    8601 with their nanoseconds)."""
    import io  # noqa: PLC0415

    buffer = io.BytesIO()
    if form == "arrow":
        with pa.ipc.new_stream(buffer, table.schema) as writer:
            writer.write_table(table)
    elif form == "parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        pq.write_table(table, buffer)
    elif form == "csv":
        from pyarrow import csv  # noqa: PLC0415

        from market_data_store.backends._layout import json_lists  # noqa: PLC0415

        if "conditions" in table.column_names:
            index = table.schema.get_field_index("conditions")
            table = table.set_column(index, "conditions", json_lists(table.column(index)))
        csv.write_csv(table, buffer)
    else:
        msg = f"unknown format {form!r}: arrow, parquet or csv"
        raise ValueError(msg)
    return buffer.getvalue()


class Stamper:
    """Versions for records that came without one: the time the store received them, in
    nanoseconds since the epoch, one nanosecond apart in the order given (later in a call,
    or in a later call, is newer knowledge) and never going back, even if the clock does."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._next = 0

    def take(self, count: int) -> int:
        """The first of ``count`` consecutive stamps."""
        first = max(self._clock(), self._next)
        self._next = first + max(count, 1)
        return first


def _stamped(table: pa.Table, first: int) -> pa.Table:
    """``table`` with a null ``as_of`` of row ``i`` set to ``first + i`` nanoseconds."""
    index = table.schema.get_field_index("as_of")
    given = table.column(index)
    if given.null_count == 0:
        return table
    import numpy as np  # noqa: PLC0415

    stamps = pa.array(np.arange(first, first + table.num_rows, dtype=np.int64)).cast(TIMESTAMP)
    return table.set_column(index, "as_of", pc.if_else(pc.is_null(given), stamps, given))


def prepare(records: Sequence[Any] | ArrowChunk, stamper: Stamper) -> Batch:
    """Records as they enter the store, versioned and with ordinals: models become
    ``ArrowChunk`` chunks (a run of one kind each, in the order given, so the receipt's
    indexes stay those of ``records``), a null ``as_of`` gets the time received, ticks
    without a venue id and without an ordinal get theirs (counted over the call)."""
    total = len(records)
    if not total:
        return Batch()
    first = stamper.take(total)
    ordinals: dict[Kind, Ordinals] = {}

    def ready(kind: Kind, table: pa.Table, offset: int) -> ArrowChunk:
        if kind in (Kind.TRADES, Kind.QUOTES):
            table = ordinals.setdefault(kind, Ordinals()).assign(table, kind)
        return ArrowChunk(kind, _stamped(table, first + offset))

    if isinstance(records, ArrowChunk):
        return Batch([ready(records.kind, records.table, 0)])
    chunks: list[ArrowChunk] = []
    start = 0
    while start < total:
        kind = KIND_OF_MODEL[type(records[start])]
        stop = start + 1
        while stop < total and KIND_OF_MODEL[type(records[stop])] is kind:
            stop += 1
        table = from_models(list(records[start:stop]), kind)
        chunks.append(ready(kind, table, start))
        start = stop
    return Batch(chunks)

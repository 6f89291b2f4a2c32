"""Arrow tables in the shape of the store's tables (private, shared by the backends).

The columnar write path: what the coordinator hands a backend is a ``Batch`` whose chunks
are model sequences or ``ArrowRecords``. Per table, the Arrow chunks (with any model chunks
of the same table converted, in order, so that the last occurrence of a key still wins) are
concatenated, laid out in the table's column order with the stored spellings (an absent
trade id or quote venue is ``''``, conditions and signal metadata are JSON text) and
deduplicated by key, the last occurrence winning: no model per row on the way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from market_data_store.backends import _rows
from market_data_store.backends.base import Record, split_records
from market_data_store.columnar import SCHEMAS, TIMESTAMP, ArrowRecords, Kind, from_models

__all__ = [
    "Columnar",
    "json_lists",
    "last_per_key",
    "rows_to_table",
    "split_columnar",
    "store_table",
]

COLUMNS = {
    Kind.BARS: _rows.BAR_COLUMNS,
    Kind.TRADES: _rows.TRADE_COLUMNS,
    Kind.QUOTES: _rows.QUOTE_COLUMNS,
    Kind.SIGNALS: _rows.SIGNAL_COLUMNS,
}
KEYS = {
    Kind.BARS: _rows.BAR_KEY,
    Kind.TRADES: _rows.TRADE_KEY,
    Kind.QUOTES: _rows.QUOTE_KEY,
    Kind.SIGNALS: _rows.SIGNAL_KEY,
}
_JSON_UNSAFE = r'[^\x20-\x7e]|["\\]'
"""Characters that ``json.dumps`` escapes (it writes only printable ASCII)."""


@dataclass(slots=True)
class Columnar:
    """A write split by table: model records where no Arrow table came for that table, and
    one Arrow table (in the store's layout, deduplicated) per table that had any."""

    models: list[Record] = field(default_factory=list)
    tables: dict[Kind, pa.Table] = field(default_factory=dict)


def split_columnar(records: Sequence[Record], *, dedupe: bool = True) -> Columnar:
    """``dedupe=False`` leaves keys that come twice in place (``last_per_key`` later): a
    backend whose append path fails on a duplicate key pays for it only when one occurs."""
    given: Any = records  # a Batch, a sequence of models, or one ArrowRecords
    chunks: Sequence[Any] = getattr(given, "chunks", None) or (
        [given] if isinstance(given, ArrowRecords) else []
    )
    arrow = [chunk for chunk in chunks if isinstance(chunk, ArrowRecords)]
    if not arrow:
        return Columnar(models=list(records))
    kinds = {chunk.kind for chunk in arrow}
    parts: dict[Kind, list[pa.Table]] = {kind: [] for kind in kinds}
    models: list[Record] = []
    for chunk in chunks:
        if isinstance(chunk, ArrowRecords):
            parts[chunk.kind].append(chunk.table)
            continue
        split = split_records(chunk)
        for kind, items in (
            (Kind.BARS, split.bars),
            (Kind.TRADES, split.trades),
            (Kind.QUOTES, split.quotes),
            (Kind.SIGNALS, split.signals),
        ):
            if not items:
                continue
            if kind in parts:  # the same table as an Arrow chunk: keep the order of keys
                parts[kind].append(from_models(items, kind))
            else:
                models.extend(items)
    tables = {
        kind: store_table(kind, pa.concat_tables(tables), dedupe=dedupe)
        for kind, tables in parts.items()
    }
    return Columnar(models=models, tables=tables)


def store_table(kind: Kind, table: pa.Table, *, dedupe: bool = True) -> pa.Table:
    """A conformed table of ``kind`` laid out as the store keeps it, last occurrence of each
    key winning (unless ``dedupe`` is false)."""
    columns: dict[str, Any] = {name: table.column(name) for name in table.column_names}
    if kind is Kind.TRADES:
        columns["trade_id"] = pc.fill_null(columns["trade_id"], "")
        columns["conditions"] = json_lists(columns["conditions"])
    elif kind is Kind.QUOTES:
        columns["exchange"] = pc.fill_null(columns["exchange"], "")
    elif kind is Kind.SIGNALS:
        columns["metadata"] = pc.fill_null(columns["metadata"], "{}")
    out = pa.table({name: columns[name] for name in COLUMNS[kind]}).combine_chunks()
    return last_per_key(kind, out) if dedupe else out


def last_per_key(kind: Kind, table: pa.Table) -> pa.Table:
    """The rows of ``table`` (in the store's layout) whose key does not come again later."""
    rows = table.num_rows
    if rows < 2:
        return table
    key = KEYS[kind]
    indexed = table.select(list(key)).append_column("_i", pa.array(range(rows), pa.int64()))
    last = indexed.group_by(list(key), use_threads=False).aggregate([("_i", "max")])
    if last.num_rows == rows:
        return table  # no key twice: the common case
    kept = last.column("_i_max")
    return table.take(pc.take(kept, pc.sort_indices(kept)))  # the rows kept, in table order


def json_lists(column: pa.ChunkedArray) -> pa.Array:
    """Lists of strings as JSON text (what ``json.dumps`` writes); null or empty: null."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.null_count == len(column):
        return pa.nulls(len(column), pa.string())
    flat = pc.list_flatten(column)
    if len(flat) and pc.any(pc.match_substring_regex(flat, _JSON_UNSAFE)).as_py():
        return pa.array(
            [json.dumps(items) if items else None for items in column.to_pylist()], pa.string()
        )
    joined = pc.binary_join(column, '", "')
    text = pc.binary_join_element_wise('["', joined, '"]', "")
    null = pa.scalar(None, pa.string())
    return pc.if_else(pc.greater(pc.list_value_length(column), 0), text, null)


def rows_to_table(kind: Kind, rows: Sequence[Sequence[Any]], *, micros: bool) -> pa.Table:
    """A table of ``kind`` (its ``columnar`` schema) from database rows in the store's
    layout, column by column (no model per row); ``micros``: timestamps are integer
    microseconds (SQLite)."""
    names = COLUMNS[kind]
    values = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
    schema = SCHEMAS[kind]
    columns = {}
    for column in schema:
        cells = list(values.get(column.name, ()))
        if column.name in ("trade_id", "exchange"):
            cells = [cell or None for cell in cells]
        elif column.name == "conditions":
            cells = [json.loads(cell) if cell else None for cell in cells]
        elif column.name == "metadata":
            cells = [None if cell in (None, "{}") else cell for cell in cells]
        if column.type == TIMESTAMP and micros:
            columns[column.name] = pa.array(cells, pa.int64()).cast(TIMESTAMP)
        else:
            columns[column.name] = pa.array(cells, column.type)
    return pa.table(columns, schema=schema)

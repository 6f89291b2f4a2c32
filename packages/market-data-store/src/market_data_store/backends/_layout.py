"""How the store lays records out in its tables (private, shared by the backends).

The columnar contract (``market_data_core.columns``) says what a record is; this module
says how a table holds it, the same way in SQLite and PostgreSQL:

- an event time ``ts`` is two columns: ``ts`` (microseconds: PostgreSQL's ``timestamptz``
  holds no more; integer microseconds in SQLite) and ``ts_nanos`` (the nanoseconds below,
  0-999; ``-1`` for ticks stored before nanoseconds, whose sub-microsecond part is unknown);
- a version is ``as_of`` (integer nanoseconds since the epoch; ``0`` for rows stored before
  versions) and ``revision``; ``reason`` says why it was written; ``ingested_at`` is when
  the store learned it (the write transaction's time);
- key columns are never null: a missing exchange or trade id is ``''``, a missing quote
  sequence ``-1``;
- a trade's conditions and a signal's metadata are JSON text (``'{}'`` for no metadata);
  a receive time is integer nanoseconds.

Every data table has a ``<table>_history`` twin: a trigger copies the row a new version
replaces with ``superseded_at``, the ``ingested_at`` of its successor (never earlier than
its own: ``GREATEST``). Reads "as known at" a time take the current rows learned by then
and the history rows valid then. A replay writes no new version, so it changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from market_data_core.columns import SCHEMAS, TIMESTAMP, VALUES, Kind

__all__ = [
    "LAYOUTS",
    "LEGACY_NANOS",
    "ORDER",
    "Layout",
    "from_store",
    "from_store_arrow",
    "json_lists",
    "to_store",
]

LEGACY_NANOS: Final = -1
"""``ts_nanos`` of ticks stored before nanoseconds (unknown below the microsecond)."""
MICROS: Final = pa.timestamp("us", tz="UTC")
_JSON_UNSAFE: Final = r'[^\x20-\x7e]|["\\]'
"""Characters that ``json.dumps`` escapes (it writes only printable ASCII)."""
_KEY_DEFAULTS: Final[Mapping[str, Any]] = {"exchange": "", "trade_id": "", "sequence": -1}


@dataclass(frozen=True, slots=True)
class Layout:
    """A data table: its columns in the store's order (``ingested_at`` apart), the key
    (a prefix of nothing in particular: listed), the values a revision changes, and its
    series (the leading text columns that, with ``time``, order its rows)."""

    kind: Kind
    columns: tuple[str, ...]
    key: tuple[str, ...]
    series: tuple[str, ...]
    time: str

    @property
    def name(self) -> str:
        return str(self.kind)

    @property
    def history(self) -> str:
        return f"{self.kind}_history"

    @property
    def values(self) -> tuple[str, ...]:
        return VALUES[self.kind]

    @property
    def version(self) -> tuple[str, ...]:
        return ("as_of", "revision")

    @property
    def nanos(self) -> bool:
        """Whether the event time has a ``ts_nanos`` column."""
        return "ts_nanos" in self.columns


_VERSIONED: Final = ("as_of", "revision", "reason")
BARS: Final = Layout(
    Kind.BARS,
    ("source", "symbol", "timeframe", "start", "open", "high", "low", "close", "volume",
     "trade_count", "vwap", *_VERSIONED),
    ("source", "symbol", "timeframe", "start"),
    ("source", "symbol", "timeframe"),
    "start",
)  # fmt: skip
TRADES: Final = Layout(
    Kind.TRADES,
    ("symbol", "ts", "ts_nanos", "exchange", "trade_id", "ordinal", "price", "size", "side",
     "conditions", "received_at", *_VERSIONED),
    ("symbol", "ts", "ts_nanos", "exchange", "trade_id", "ordinal"),
    ("symbol",),
    "ts",
)  # fmt: skip
QUOTES: Final = Layout(
    Kind.QUOTES,
    ("symbol", "ts", "ts_nanos", "exchange", "sequence", "ordinal", "bid", "ask", "bid_size",
     "ask_size", "received_at", *_VERSIONED),
    ("symbol", "ts", "ts_nanos", "exchange", "sequence", "ordinal"),
    ("symbol",),
    "ts",
)  # fmt: skip
SIGNALS: Final = Layout(
    Kind.SIGNALS,
    ("source", "symbol", "ts", "ts_nanos", "name", "value", "score", "metadata", *_VERSIONED),
    ("source", "symbol", "ts", "ts_nanos", "name"),
    ("source", "symbol"),
    "ts",
)  # fmt: skip
LAYOUTS: Final = {layout.kind: layout for layout in (BARS, TRADES, QUOTES, SIGNALS)}
ORDER: Final = {
    Kind.BARS: '"start", "source"',
    Kind.TRADES: '"ts", "ts_nanos", "exchange", "trade_id", "ordinal"',
    Kind.QUOTES: '"ts", "ts_nanos", "exchange", "sequence", "ordinal"',
    Kind.SIGNALS: '"ts", "ts_nanos", "name", "source"',
}
"""The order of one series' rows in a read (after its series columns): time, then the key."""


def _int64(column: pa.ChunkedArray | pa.Array) -> Any:
    """A timestamp column as int64 nanoseconds (numpy; nulls as 0)."""
    nanos = pc.cast(column, pa.int64())
    return np.asarray(pc.fill_null(nanos, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def to_store(kind: Kind, table: pa.Table, *, as_of: int) -> pa.Table:
    """A conformed table of ``kind`` in the store's layout; a null ``as_of`` becomes
    ``as_of`` (nanoseconds), a null ordinal 0 (give ordinals before: ``Ordinals``)."""
    layout = LAYOUTS[kind]
    rows = table.num_rows
    out: dict[str, Any] = {}
    for name in layout.columns:
        if name == "ts_nanos":
            continue
        if name == layout.time and layout.nanos:
            nanos = _int64(table.column(name))
            micros, below = np.divmod(nanos, 1000)
            out[name] = pa.array(micros, pa.int64()).cast(MICROS)
            out["ts_nanos"] = pa.array(below.astype(np.int16))
        elif name == layout.time:  # a bar's start: whole seconds, checked by conform
            out[name] = pc.cast(table.column(name), MICROS)
        elif name == "as_of":
            column = pc.cast(table.column(name), pa.int64())
            out[name] = pc.fill_null(column, as_of) if column.null_count else column
        elif name == "received_at":
            out[name] = pc.cast(table.column(name), pa.int64())
        elif name in _KEY_DEFAULTS:
            out[name] = pc.fill_null(table.column(name), _KEY_DEFAULTS[name])
        elif name == "ordinal":
            out[name] = pc.fill_null(table.column(name), 0)
        elif name == "conditions":
            out[name] = json_lists(table.column(name))
        elif name == "metadata":
            out[name] = pc.fill_null(table.column(name), "{}")
        elif name == "revision":
            out[name] = pc.fill_null(table.column(name), 0)
        else:
            out[name] = table.column(name)
    assert all(len(column) == rows for column in out.values())
    return pa.table({name: out[name] for name in layout.columns}).combine_chunks()


def json_lists(column: pa.ChunkedArray | pa.Array) -> pa.Array:
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


def from_store(
    kind: Kind, rows: Sequence[Sequence[Any]], *, micros: bool, extra: Sequence[str] = ()
) -> pa.Table:
    """A table of ``kind`` (its core schema, then the ``extra`` columns that follow the
    layout's in each row: ``ingested_at``, ``superseded_at``, as timestamps) from database
    rows in the store's layout, column by column; ``micros``: times are integer
    microseconds (SQLite), else datetimes."""
    layout = LAYOUTS[kind]
    names = (*layout.columns, *extra)
    values = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
    n = len(rows)

    def times(name: str) -> pa.Array:
        cells = values.get(name, ())
        if micros:
            return pa.array(cells, pa.int64(), size=n).cast(MICROS)
        return pa.array(cells, MICROS, size=n)

    columns: dict[str, Any] = {}
    for field in SCHEMAS[kind]:
        name = field.name
        if name == layout.time:
            column = times(name).cast(TIMESTAMP)
            if layout.nanos:
                below = np.asarray(values.get("ts_nanos", ()), dtype=np.int64)
                nanos = _int64(column) + np.maximum(below, 0)
                column = pa.array(nanos, pa.int64()).cast(TIMESTAMP)
            columns[name] = column
        elif name in ("as_of", "received_at"):
            columns[name] = pa.array(values.get(name, ()), pa.int64(), size=n).cast(TIMESTAMP)
        elif name in ("exchange", "trade_id"):
            columns[name] = pa.array([c or None for c in values.get(name, ())], pa.string(), size=n)
        elif name == "sequence":
            numbers = [None if c < 0 else c for c in values.get(name, ())]
            columns[name] = pa.array(numbers, pa.int64(), size=n)
        elif name == "conditions":
            lists = [json.loads(c) if c else None for c in values.get(name, ())]
            columns[name] = pa.array(lists, field.type, size=n)
        elif name == "metadata":
            texts = [None if c in (None, "{}") else _json_text(c) for c in values.get(name, ())]
            columns[name] = pa.array(texts, pa.string(), size=n)
        else:
            columns[name] = pa.array(values.get(name, ()), field.type, size=n)
    schema = SCHEMAS[kind]
    for name in extra:
        columns[name] = times(name).cast(TIMESTAMP)
        schema = schema.append(pa.field(name, TIMESTAMP))
    return pa.table(columns, schema=schema)


def from_store_arrow(kind: Kind, data: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """``data`` of ``kind`` as the database returns it in Arrow (the store's layout: times
    as timestamps or integer microseconds, ``ts_nanos`` apart, empty keys as ``''``) in
    core's schema of ``kind``, column by column in Arrow (no Python object per row but for
    a trade's non-null conditions, parsed from their JSON)."""
    layout = LAYOUTS[kind]
    present = set(data.schema.names)
    columns: list[Any] = []
    for field in SCHEMAS[kind]:
        name = field.name
        column = data.column(name)
        if name == layout.time:
            column = pc.multiply(pc.cast(_as_micros(column), pa.int64()), 1000)
            if layout.nanos and "ts_nanos" in present:
                below = pc.max_element_wise(pc.cast(data.column("ts_nanos"), pa.int64()), 0)
                column = pc.add(column, below)
            column = pc.cast(column, TIMESTAMP)
        elif name in ("as_of", "received_at"):
            column = pc.cast(pc.cast(column, pa.int64()), TIMESTAMP)
        elif name in ("exchange", "trade_id"):
            column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
        elif name == "sequence":
            column = pc.if_else(pc.less(column, 0), pa.scalar(None, pa.int64()), column)
        elif name == "conditions":
            column = _json_list_column(column, field.type)
        elif name == "metadata":
            column = pc.if_else(pc.equal(column, "{}"), pa.scalar(None, pa.string()), column)
        columns.append(pc.cast(column, field.type) if column.type != field.type else column)
    build = pa.RecordBatch if isinstance(data, pa.RecordBatch) else pa.Table
    return build.from_arrays(columns, schema=SCHEMAS[kind])


def _as_micros(column: Any) -> Any:
    """A time column as timestamp[us, UTC] (PostgreSQL's timestamptz; SQLite's integers)."""
    if pa.types.is_timestamp(column.type):
        return pc.cast(column, MICROS) if column.type != MICROS else column
    return pc.cast(pc.cast(column, pa.int64()), MICROS)


def _json_list_column(column: Any, kind: pa.DataType) -> Any:
    """JSON arrays of text as lists (null, ``''`` and ``[]``: null)."""
    if column.null_count == len(column):
        return pa.nulls(len(column), kind)
    texts = column.to_pylist()
    return pa.array([json.loads(t) if t else None for t in texts], kind)


def _json_text(value: Any) -> str:
    """Metadata as JSON text (PostgreSQL's jsonb comes back as text already)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


# --- SQL ----------------------------------------------------------------------------------
# The rule, in SQL, the same for both databases (``dialect`` only spells it): a version
# replaces the stored one when ``(as_of, revision)`` is higher, or equal with greater values
# (compared in ``VALUES`` order, a null below any value, text by its bytes): the order
# ``latest_per_key`` uses within a batch, so the outcome never depends on which write
# arrives first.

_NULL_BELOW: Final = {
    "float": {"postgresql": "'-Infinity'::float8", "sqlite": "-1e999"},
    "int": {"postgresql": str(-(2**63)), "sqlite": str(-(2**63))},
    "text": {"postgresql": "''", "sqlite": "''"},
}
_KINDS_OF: Final = {
    "trade_count": "int", "received_at": "int", "vwap": "float", "score": "float",
    "side": "text", "conditions": "text",
}  # fmt: skip
_TEXT: Final = frozenset({"side", "conditions", "metadata"})


def _ranked(column: str, row: str, dialect: str) -> str:
    """``row.column`` as it ranks in a tie: nulls below any value, text by its bytes."""
    value = f'{row}."{column}"'
    if column in _KINDS_OF:
        value = f"coalesce({value}, {_NULL_BELOW[_KINDS_OF[column]][dialect]})"
    if dialect == "postgresql" and column in _TEXT:
        value = f'{value} COLLATE "C"'
    return value


def newer_sql(layout: Layout, new: str, old: str, dialect: str) -> str:
    """The condition under which row ``new`` replaces row ``old`` (aliases). A ``CASE``, so
    that the tie test runs only for equal versions with other values, and in that order:
    there ``mds_tie(new wins)`` counts the conflict (a function of the connection on
    SQLite, of the schema on PostgreSQL: ``ties_sql``) and returns whether ``new`` wins."""
    version_new = f'({new}."as_of", {new}."revision")'
    version_old = f'({old}."as_of", {old}."revision")'
    ranked_new = ", ".join(_ranked(c, new, dialect) for c in layout.values)
    ranked_old = ", ".join(_ranked(c, old, dialect) for c in layout.values)
    if len(layout.values) == 1:  # a row of one value is the value
        ranked_new, ranked_old = f"({ranked_new}, 0)", f"({ranked_old}, 0)"
    else:
        ranked_new, ranked_old = f"({ranked_new})", f"({ranked_old})"
    return (
        f"(CASE WHEN {version_new} > {version_old} THEN true"
        f" WHEN {version_new} < {version_old} THEN false"
        f" WHEN {changed_sql(layout, new, old, dialect)}"
        f" THEN mds_tie({ranked_new} > {ranked_old}) ELSE false END)"
    )


TIES_SETTING: Final = "mds.ties"
"""PostgreSQL: the transaction's count of ties (``mds_tie`` adds to it)."""


def changed_sql(layout: Layout, a: str, b: str, dialect: str) -> str:
    """Whether rows ``a`` and ``b`` hold other values (nulls equal)."""
    left = ", ".join(f'{a}."{c}"' for c in layout.values)
    right = ", ".join(f'{b}."{c}"' for c in layout.values)
    differ = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    return f"(({left}) {differ} ({right}))"


def tied_sql(layout: Layout, a: str, b: str, dialect: str) -> str:
    """Rows ``a`` and ``b`` of one key have equal versions and other values: a conflict."""
    return (
        f'({a}."as_of" = {b}."as_of" AND {a}."revision" = {b}."revision"'
        f" AND {changed_sql(layout, a, b, dialect)})"
    )


def key_match_sql(layout: Layout, a: str, b: str) -> str:
    return " AND ".join(f'{a}."{c}" = {b}."{c}"' for c in layout.key)

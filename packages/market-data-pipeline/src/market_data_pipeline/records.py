"""How records travel inside the pipeline: Arrow tables with fixed schemas, one per kind.

Channels carry batches, not single items (DESIGN §6): a batch is a ``pyarrow.Table`` whose
schema is one of ``TRADES``, ``QUOTES``, ``BARS`` or ``SIGNALS`` (operators may also pass
tables of any other schema through). Records are validated once, at the edges, per column
and per batch (:func:`check`), and convert losslessly to and from core models
(:func:`to_models`, :func:`from_models`).

Timestamps are ``timestamp[us, UTC]``: the precision of a Python ``datetime``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from enum import StrEnum
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from market_data_core import SYMBOL_PATTERN, Bar, Quote, Signal, Trade
from market_data_pipeline.exceptions import RecordError

__all__ = [
    "BARS",
    "QUOTES",
    "SIGNALS",
    "TIMESTAMP",
    "TRADES",
    "Kind",
    "check",
    "concat",
    "empty",
    "first_bad",
    "from_models",
    "kind_of",
    "schema_of",
    "to_models",
]

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")


class Kind(StrEnum):
    """What a batch holds."""

    TRADES = "trades"
    QUOTES = "quotes"
    BARS = "bars"
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
    ]
)

_SCHEMAS: Final = {Kind.TRADES: TRADES, Kind.QUOTES: QUOTES, Kind.BARS: BARS, Kind.SIGNALS: SIGNALS}
_MODELS: Final[dict[Kind, type[BaseModel]]] = {
    Kind.TRADES: Trade,
    Kind.QUOTES: Quote,
    Kind.BARS: Bar,
    Kind.SIGNALS: Signal,
}
_FINITE: Final = {
    Kind.TRADES: ("price", "size"),
    Kind.QUOTES: ("bid", "ask", "bid_size", "ask_size"),
    Kind.BARS: ("open", "high", "low", "close", "volume", "vwap"),
    Kind.SIGNALS: ("value", "score"),
}
_NON_NEGATIVE: Final = {
    Kind.TRADES: ("size",),
    Kind.QUOTES: ("bid_size", "ask_size"),
    Kind.BARS: ("volume", "trade_count"),
    Kind.SIGNALS: (),
}


def schema_of(kind: Kind | str) -> pa.Schema:
    return _SCHEMAS[Kind(kind)]


def kind_of(table: pa.Table) -> Kind | None:
    """The kind whose schema the table has (field names and types), else ``None``."""
    for kind, schema in _SCHEMAS.items():
        if table.schema.equals(schema, check_metadata=False):
            return kind
    return None


def empty(kind: Kind | str) -> pa.Table:
    return schema_of(kind).empty_table()


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """One table from several of the same schema (no copy of the column data)."""
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables)


def from_models(models: Iterable[BaseModel], kind: Kind | str | None = None) -> pa.Table:
    """A table of the given core models (all of one kind)."""
    items = list(models)
    if kind is None:
        if not items:
            msg = "cannot infer the kind of an empty list of records; pass kind="
            raise ValueError(msg)
        kind = _kind_of_model(type(items[0]))
    kind = Kind(kind)
    rows = [m.model_dump() for m in items]
    if kind is Kind.BARS:
        for row in rows:
            row["timeframe"] = str(row["timeframe"])
    if kind is Kind.SIGNALS:
        for row in rows:
            row.pop("metadata", None)
    return pa.Table.from_pylist(rows, schema=_SCHEMAS[kind])


def _kind_of_model(model: type[BaseModel]) -> Kind:
    for kind, cls in _MODELS.items():
        if model is cls:
            return kind
    msg = "pass kind= for records that are not a list of Trade, Quote, Bar or Signal"
    raise ValueError(msg)


def to_models(table: pa.Table, kind: Kind | str | None = None) -> list[Any]:
    """Core models (validated) for every row of the table."""
    kind = Kind(kind) if kind is not None else kind_of(table)
    if kind is None:
        msg = f"not a table of trades, quotes, bars or signals: {table.schema}"
        raise ValueError(msg)
    model = _MODELS[kind]
    rows = table.to_pylist()
    if kind is Kind.TRADES:
        for row in rows:
            _drop_nones(row, ("exchange", "trade_id", "side", "conditions"))
    elif kind is Kind.QUOTES:
        for row in rows:
            _drop_nones(row, ("exchange",))
    elif kind is Kind.SIGNALS:
        for row in rows:
            _drop_nones(row, ("score",))
    return [model.model_validate(row) for row in rows]


def _drop_nones(row: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if row.get(name) is None:
            row.pop(name, None)


def check(table: pa.Table, kind: Kind | str, *, source: str, first_line: int = 1) -> pa.Table:
    """Validate a batch at the edge, column by column; return it cast to the kind's schema.

    Raises :class:`RecordError` naming ``source``, the line of the first bad row
    (``first_line`` is the line of the table's first row) and the field.
    """
    kind = Kind(kind)
    schema = _SCHEMAS[kind]
    missing = [f.name for f in schema if not f.nullable and f.name not in table.column_names]
    if missing:
        raise RecordError(f"missing column(s) {', '.join(missing)}", source=source)
    columns = {}
    for field in schema:
        column = table.column(field.name) if field.name in table.column_names else None
        columns[field.name] = _cast(column, field, table.num_rows, source, first_line)
    out = pa.table(columns, schema=schema)
    _check_values(out, kind, source, first_line)
    return out


def _cast(
    column: pa.ChunkedArray | None, field: pa.Field, rows: int, source: str, first_line: int
) -> pa.ChunkedArray | pa.Array:
    if column is None:
        return pa.nulls(rows, field.type)
    if pa.types.is_timestamp(field.type) and pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            raise RecordError(
                "timestamps without a timezone (write them in UTC with an offset)",
                source=source,
                field=field.name,
            )
        return column.cast(TIMESTAMP)
    try:
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        bad = first_bad(array, lambda a: a.cast(field.type))
        if _casts(array.slice(bad, 1), field.type):  # the column as a whole is the problem
            raise RecordError(
                f"cannot read as {field.type}: {error}", source=source, field=field.name
            ) from None
        what = "a number" if pa.types.is_floating(field.type) else str(field.type)
        raise RecordError(
            f"is not {what} ({column[bad].as_py()!r})",
            source=source,
            line=first_line + bad,
            field=field.name,
        ) from None


def _casts(array: pa.Array, kind: pa.DataType) -> bool:
    try:
        array.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def first_bad(array: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """Index of the first element ``convert`` fails on (bisecting; ``convert`` must fail on
    the whole array). Only used to name the line of an error."""
    lo, hi = 0, len(array)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(array.slice(lo, mid - lo))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, TypeError):
            hi = mid
        else:
            lo = mid
    return lo


def _check_values(table: pa.Table, kind: Kind, source: str, first_line: int) -> None:
    def fail(mask: pa.ChunkedArray | pa.Array, field: str, what: str) -> None:
        bad = pc.index(pc.fill_null(mask, False), value=True).as_py()
        if bad >= 0:
            value = table.column(field)[bad].as_py()
            raise RecordError(
                f"{what} ({value!r})", source=source, line=first_line + bad, field=field
            )

    for field in schema_of(kind):
        column = table.column(field.name)
        if not field.nullable:
            fail(pc.is_null(column), field.name, "is missing")
    for name in _FINITE[kind]:
        column = table.column(name)
        fail(pc.invert(pc.is_finite(column)), name, "is not a finite number")
    for name in _NON_NEGATIVE[kind]:
        fail(pc.less(table.column(name), 0), name, "is negative")
    fail(
        pc.invert(pc.match_substring_regex(table.column("symbol"), SYMBOL_PATTERN)),
        "symbol",
        "is not a valid symbol",
    )
    if kind is Kind.QUOTES:
        fail(pc.greater(table.column("bid"), table.column("ask")), "bid", "is above the ask")
    if kind is Kind.BARS:
        low, high = table.column("low"), table.column("high")
        fail(pc.greater(low, high), "low", "is above high")
        for name in ("open", "close"):
            col = table.column(name)
            fail(pc.or_(pc.less(col, low), pc.greater(col, high)), name, "is outside low..high")


def utc(table: pa.Table, column: str = "ts") -> list[Any]:
    """The column's values as aware UTC datetimes (for tests and messages)."""
    return [v.astimezone(UTC) for v in table.column(column).to_pylist()]

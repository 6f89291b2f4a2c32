"""Market data as Arrow tables: the store's columnar schemas, shared by its write and read
paths.

One schema per kind of record, with the field names and types of the pipeline's batches
(``market_data_pipeline.records``), so a pipeline table goes into the store as it is:
timestamps are ``timestamp[us, UTC]``, prices and sizes ``float64``, free text ``string``.
Signals carry their ``metadata`` as a JSON object in a string column.

A table of one of these kinds converts losslessly to and from core models
(:func:`to_models`); the store never needs the models on its columnar path.

At the store's edge (``Store.submit_arrow``, HTTP ingest of Arrow IPC), :func:`conform`
checks a table column by column against the same rules as the core models (a hypothesis
test holds them equal) and casts it to its kind's schema; :class:`ArrowRecords` is such a
table on its way to the database: sliced without copying, never turned into models unless
a record must be dead-lettered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from market_data_core import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    SYMBOL_PATTERN,
    Bar,
    Quote,
    Signal,
    Timeframe,
    Trade,
    TradeSide,
)
from market_data_store.exceptions import StoreError

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
    "conform",
    "empty",
    "encode",
    "kind_of",
    "to_models",
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


def encode(table: pa.Table, form: str) -> bytes:
    """``table`` as an Arrow IPC stream (``arrow``), a Parquet file (``parquet``) or CSV
    (``csv``: a trade's conditions as JSON text, since CSV has no lists)."""
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

        from market_data_store.backends._columns import json_lists  # noqa: PLC0415

        if "conditions" in table.column_names:
            index = table.schema.get_field_index("conditions")
            table = table.set_column(index, "conditions", json_lists(table.column(index)))
        csv.write_csv(table, buffer)
    else:
        msg = f"unknown format {form!r}: arrow, parquet or csv"
        raise ValueError(msg)
    return buffer.getvalue()


_MODELS: Final = {Kind.BARS: Bar, Kind.TRADES: Trade, Kind.QUOTES: Quote, Kind.SIGNALS: Signal}
_IDENTIFIER: Final = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
_SIGNAL_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,63}$"
_SIDES: Final = pa.array([side.value for side in TradeSide])
_TS_MIN: Final = pa.scalar(MIN_TIMESTAMP, TIMESTAMP)
_TS_MAX: Final = pa.scalar(MAX_TIMESTAMP, TIMESTAMP)
_TIME: Final = {Kind.BARS: "start", Kind.TRADES: "ts", Kind.QUOTES: "ts", Kind.SIGNALS: "ts"}
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
_TEXT: Final = {  # free text: (column, shortest, longest)
    Kind.TRADES: (("exchange", 1, 32), ("trade_id", 1, 64)),
    Kind.QUOTES: (("exchange", 1, 32),),
    Kind.BARS: (),
    Kind.SIGNALS: (),
}


class ColumnError(StoreError, ValueError):
    """A table the store cannot take: names the row (0-based) and the column."""

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None) -> None:
        where = ", ".join(
            part
            for part in (
                f"row {row}" if row is not None else "",
                f"column {column!r}" if column is not None else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.column = column
        self.row = row
        self.reason = message


def kind_of(table: pa.Table | pa.Schema) -> Kind | None:
    """The kind a table's columns say it holds: every required column of exactly one kind
    is present (extra columns are ignored), else ``None``."""
    names = set(table.names if isinstance(table, pa.Schema) else table.column_names)
    found = [
        kind
        for kind, schema in SCHEMAS.items()
        if {f.name for f in schema if not f.nullable} <= names
    ]
    return found[0] if len(found) == 1 else None


def conform(table: pa.Table, kind: Kind | str | None = None) -> pa.Table:
    """``table`` checked against the core models' rules and cast to ``kind``'s schema
    (columns by name, extra ones dropped, missing nullable ones null; timeframes in their
    canonical spelling). Raises :class:`ColumnError` naming a bad row and its column (the
    first that breaks the first rule checked)."""
    if kind is None:
        kind = kind_of(table)
        if kind is None:
            msg = f"cannot tell which kind of records the columns {table.column_names} hold"
            raise ColumnError(msg)
    kind = Kind(kind)
    schema = SCHEMAS[kind]
    missing = [f.name for f in schema if not f.nullable and f.name not in table.column_names]
    if missing:
        msg = f"missing required column(s) {', '.join(missing)} for {kind}"
        raise ColumnError(msg, column=missing[0])
    rows = table.num_rows
    columns = [
        _cast(table.column(f.name), f) if f.name in table.column_names else pa.nulls(rows, f.type)
        for f in schema
    ]
    out = pa.Table.from_arrays(columns, schema=schema.with_metadata(None))
    _check(out, kind)
    if kind is Kind.BARS:
        out = out.set_column(2, schema.field("timeframe"), _canonical_timeframes(out))
    return out


def _cast(column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    if pa.types.is_timestamp(field.type):
        if not pa.types.is_timestamp(column.type):
            msg = f"is {column.type}, not a timestamp with a timezone"
            raise ColumnError(msg, column=field.name)
        if column.type.tz is None:
            msg = "holds timestamps without a timezone (store them in UTC, with tz=UTC)"
            raise ColumnError(msg, column=field.name)
        if column.type.unit == "ns":
            nanos = pc.cast(column, pa.int64())
            if pc.any(pc.not_equal(pc.multiply(pc.divide(nanos, 1000), 1000), nanos)).as_py():
                msg = "holds nanoseconds: the store keeps microseconds"
                raise ColumnError(msg, column=field.name)
        column = pc.cast(column, pa.timestamp(column.type.unit, "UTC"))
    elif not _compatible(column.type, field.type):  # as strict as JSON: "10" is no number
        msg = f"is {column.type}, not {field.type}"
        raise ColumnError(msg, column=field.name)
    try:
        return pc.cast(column, field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        msg = f"is {column.type}, cannot be read as {field.type}: {error}"
        raise ColumnError(msg, column=field.name) from None


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _compatible(given: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether a column of type ``given`` may be cast to ``wanted`` without reinterpreting
    it: numbers to numbers, text to text, lists of text to lists of text."""
    if pa.types.is_null(given):
        return True
    if pa.types.is_floating(wanted):
        return bool(pa.types.is_floating(given) or pa.types.is_integer(given))
    if pa.types.is_integer(wanted):
        return bool(pa.types.is_integer(given))
    if pa.types.is_list(wanted):
        return (pa.types.is_list(given) or pa.types.is_large_list(given)) and _is_text(
            given.value_type
        )
    return _is_text(given)


def _first(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(pc.fill_null(mask, False), value=True).as_py())


def _fail_at(table: pa.Table, mask: Any, column: str, what: str, *, show: bool = True) -> None:
    row = _first(mask)
    if row >= 0:
        shown = f" ({table.column(column)[row].as_py()!r})" if show else ""
        raise ColumnError(f"{what}{shown}", column=column, row=row)


def _check(table: pa.Table, kind: Kind) -> None:
    for field in SCHEMAS[kind]:
        if not field.nullable:
            _fail_at(
                table, pc.is_null(table.column(field.name)), field.name, "is missing", show=False
            )
    time = table.column(_TIME[kind])
    _fail_at(
        table,
        pc.or_(pc.less(time, _TS_MIN), pc.greater_equal(time, _TS_MAX)),
        _TIME[kind],
        f"is outside [{MIN_TIMESTAMP.year}-01-01, {MAX_TIMESTAMP.year}-01-01)",
    )
    for name in _FINITE[kind]:
        _fail_at(table, pc.invert(pc.is_finite(table.column(name))), name, "is not a finite number")
    for name in _NON_NEGATIVE[kind]:
        _fail_at(table, pc.less(table.column(name), 0), name, "is negative")
    _fail_at(
        table,
        pc.invert(pc.match_substring_regex(table.column("symbol"), SYMBOL_PATTERN)),
        "symbol",
        "is not a valid symbol",
    )
    for name, shortest, longest in _TEXT[kind]:
        _check_text(table, table.column(name), name, shortest, longest)
    if kind is Kind.TRADES:
        _check_trades(table)
    elif kind is Kind.QUOTES:
        bid, ask = table.column("bid"), table.column("ask")
        _fail_at(table, pc.greater(bid, ask), "bid", "is above the ask (a crossed quote)")
    elif kind is Kind.BARS:
        _check_bars(table)
    else:
        _check_signals(table)


def _check_text(
    table: pa.Table, column: pa.ChunkedArray, name: str, shortest: int, longest: int
) -> None:
    length = pc.utf8_length(column)
    _fail_at(table, pc.match_substring(column, "\x00"), name, "contains a NUL character")
    _fail_at(
        table,
        pc.or_(pc.less(length, shortest), pc.greater(length, longest)),
        name,
        f"must be {shortest} to {longest} characters long",
    )


def _check_trades(table: pa.Table) -> None:
    side = table.column("side")
    _fail_at(
        table,
        pc.and_(pc.is_valid(side), pc.invert(pc.is_in(side, value_set=_SIDES))),
        "side",
        f"is not one of {', '.join(_SIDES.to_pylist())}",
    )
    conditions = table.column("conditions")
    flat = pc.list_flatten(conditions)
    if len(flat):
        parents = pc.list_parent_indices(conditions)
        length = pc.utf8_length(flat)
        bad = pc.or_(
            pc.or_(pc.is_null(flat), pc.match_substring(flat, "\x00")),
            pc.or_(pc.less(length, 1), pc.greater(length, 16)),
        )
        where = _first(bad)
        if where >= 0:
            row = int(parents[where].as_py())
            msg = (
                f"each condition must be 1 to 16 characters, without NUL ({flat[where].as_py()!r})"
            )
            raise ColumnError(msg, column="conditions", row=row)


def _check_bars(table: pa.Table) -> None:
    _fail_at(
        table,
        pc.invert(pc.match_substring_regex(table.column("source"), _IDENTIFIER)),
        "source",
        "is not a valid identifier (letters, digits, . _ : -)",
    )
    low, high = table.column("low"), table.column("high")
    _fail_at(table, pc.greater(low, high), "low", "is above high")
    for name in ("open", "close", "vwap"):
        column = table.column(name)
        _fail_at(
            table,
            pc.or_(pc.less(column, low), pc.greater(column, high)),
            name,
            "is outside [low, high]",
        )
    micros = pc.cast(table.column("start"), pa.int64())
    timeframes = pc.dictionary_encode(table.column("timeframe")).combine_chunks()
    steps = []
    for position, text in enumerate(timeframes.dictionary.to_pylist()):
        try:
            steps.append(Timeframe.parse(text).seconds * 1_000_000)
        except ValueError as error:
            row = _first(pc.equal(timeframes.indices, position))
            raise ColumnError(f"{error}", column="timeframe", row=row) from None
    step = pc.take(pa.array(steps, pa.int64()), timeframes.indices)
    misaligned = pc.not_equal(pc.subtract(micros, pc.multiply(pc.divide(micros, step), step)), 0)
    # divide truncates toward zero; before 1970 a floor is one step lower, but aligned
    # values are exact multiples either way, so the remainder test holds for both signs
    _fail_at(table, misaligned, "start", "is not aligned to its timeframe")


def _canonical_timeframes(table: pa.Table) -> pa.ChunkedArray:
    encoded = pc.dictionary_encode(table.column("timeframe")).combine_chunks()
    names = pa.array([str(Timeframe.parse(t)) for t in encoded.dictionary.to_pylist()])
    return pa.chunked_array([pc.take(names, encoded.indices)])


def _check_signals(table: pa.Table) -> None:
    _fail_at(
        table,
        pc.invert(pc.match_substring_regex(table.column("source"), _IDENTIFIER)),
        "source",
        "is not a valid identifier (letters, digits, . _ : -)",
    )
    _fail_at(
        table,
        pc.invert(pc.match_substring_regex(table.column("name"), _SIGNAL_NAME)),
        "name",
        "is not a valid signal name",
    )
    metadata = table.column("metadata")
    if metadata.null_count < len(metadata):  # rare: checked by the model, row by row
        for row, text in enumerate(metadata.to_pylist()):
            if text is None:
                continue
            try:
                Signal.model_validate(
                    {"source": "x", "symbol": "X", "ts": MIN_TIMESTAMP, "name": "x", "value": 0.0,
                     "metadata": json.loads(text)}
                )  # fmt: skip
            except ValueError as error:
                msg = f"is not a JSON object of short keys and scalar values: {_short(error)}"
                raise ColumnError(msg, column="metadata", row=row) from None


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200]


def to_models(table: pa.Table, kind: Kind | str) -> list[Any]:
    """Core models of a conformed table's rows (validated: the dead-letter path and tests)."""
    kind = Kind(kind)
    model: Any = _MODELS[kind]
    rows = table.to_pylist()
    optional = {
        Kind.TRADES: ("exchange", "trade_id", "side", "conditions"),
        Kind.QUOTES: ("exchange",),
        Kind.BARS: ("trade_count", "vwap"),
        Kind.SIGNALS: ("score", "metadata"),
    }[kind]
    for row in rows:
        for name in optional:
            if row.get(name) is None:
                row.pop(name, None)
        if kind is Kind.SIGNALS and "metadata" in row:
            row["metadata"] = json.loads(row["metadata"])
    return [model.model_validate(row) for row in rows]


def from_models(models: list[Any], kind: Kind | str) -> pa.Table:
    """A table of core models of one kind (tests, and callers that hold models)."""
    kind = Kind(kind)
    rows = [m.model_dump() for m in models]
    for row in rows:
        if kind is Kind.BARS:
            row["timeframe"] = str(row["timeframe"])
        if kind is Kind.TRADES:
            row["conditions"] = list(row["conditions"]) or None
        if kind is Kind.SIGNALS:
            row["metadata"] = (
                json.dumps(row["metadata"], sort_keys=True) if row["metadata"] else None
            )
    return pa.Table.from_pylist(rows, schema=SCHEMAS[kind])


@dataclass(frozen=True, slots=True)
class ArrowRecords:
    """A conformed table of one kind, as the write coordinator carries it: ``len`` is its
    rows, slicing is zero-copy, and iterating yields core models (for the dead-letter store
    and writers that only know models; the backends write the table itself)."""

    kind: Kind
    table: pa.Table

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, index: slice) -> ArrowRecords:
        if index.step not in (None, 1):
            msg = "ArrowRecords supports contiguous slices only"
            raise TypeError(msg)
        start, stop, _ = index.indices(self.table.num_rows)
        return ArrowRecords(self.kind, self.table.slice(start, max(stop - start, 0)))

    def __iter__(self) -> Iterator[Any]:
        return iter(to_models(self.table, self.kind))

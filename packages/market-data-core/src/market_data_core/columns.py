"""Market data as Arrow tables: the one columnar contract of the platform (extra ``arrow``).

One schema per kind of record (:class:`Kind`), with the core models' field names: the
pipeline's batches, the store's write and read paths and the HTTP service's Arrow, Parquet
and CSV bodies all use these. Timestamps are ``timestamp[ns, UTC]`` (:data:`TIMESTAMP`),
so every tick keeps its nanoseconds; prices and sizes are ``float64``; free text is
``string``; a signal's ``metadata`` is a JSON object in a string column.

- :func:`kind_of` tells the kind from the columns; :func:`conform` checks a table column
  by column against the core models' rules (a hypothesis test holds them equal) and casts it
  to its kind's schema, raising :class:`ColumnError` naming the row and the column;
- :func:`to_models` / :func:`from_models` convert losslessly to and from core models;
- :data:`KEYS`, :data:`VERSION` and :data:`VALUES` say what identifies a record, what
  orders its versions and what a new version may change; :func:`latest_per_key` keeps the
  newest version of each key of a table (the store's rule, see docs/store.md);
- :class:`Ordinals` gives ticks without a venue id their ordinal where they enter.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter
from typing import Any, Final

try:
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError as error:  # pragma: no cover - depends on the installation
    msg = "market_data_core.columns needs pyarrow: pip install 'market-data-core[arrow]'"
    raise ImportError(msg) from error

import numpy as np

from market_data_core._types import MAX_TIMESTAMP, MIN_TIMESTAMP, SYMBOL_PATTERN
from market_data_core.bars import Bar
from market_data_core.exceptions import ColumnError
from market_data_core.signals import Signal
from market_data_core.ticks import Quote, Trade, TradeSide
from market_data_core.timeframe import Timeframe
from market_data_core.timestamps import NanoDatetime, from_ns, to_ns

__all__ = [
    "BARS",
    "KEYS",
    "QUOTES",
    "SCHEMAS",
    "SIGNALS",
    "TIME",
    "TIMESTAMP",
    "TRADES",
    "VALUES",
    "VERSION",
    "ColumnError",
    "Kind",
    "Ordinals",
    "conform",
    "empty",
    "from_models",
    "kind_of",
    "latest_per_key",
    "schema_of",
    "to_models",
]

TIMESTAMP: Final = pa.timestamp("ns", tz="UTC")
"""Every timestamp column: nanoseconds since the epoch, UTC."""


class Kind(StrEnum):
    """What a table holds (also the name of the store's table for it)."""

    BARS = "bars"
    TRADES = "trades"
    QUOTES = "quotes"
    SIGNALS = "signals"


_VERSION_FIELDS: Final = (
    pa.field("as_of", TIMESTAMP),
    pa.field("revision", pa.int64()),
    pa.field("reason", pa.string()),
)
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
        pa.field("received_at", TIMESTAMP),
        pa.field("ordinal", pa.int64()),
        *_VERSION_FIELDS,
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
        pa.field("sequence", pa.int64()),
        pa.field("received_at", TIMESTAMP),
        pa.field("ordinal", pa.int64()),
        *_VERSION_FIELDS,
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
        *_VERSION_FIELDS,
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
        *_VERSION_FIELDS,
    ]
)
SCHEMAS: Final = {Kind.BARS: BARS, Kind.TRADES: TRADES, Kind.QUOTES: QUOTES, Kind.SIGNALS: SIGNALS}

KEYS: Final = {
    Kind.BARS: ("source", "symbol", "timeframe", "start"),
    Kind.TRADES: ("symbol", "ts", "exchange", "trade_id", "ordinal"),
    Kind.QUOTES: ("symbol", "ts", "exchange", "sequence", "ordinal"),
    Kind.SIGNALS: ("source", "symbol", "name", "ts"),
}
"""What identifies a record: two rows with the same key are versions of one record."""
TIME: Final = {Kind.BARS: "start", Kind.TRADES: "ts", Kind.QUOTES: "ts", Kind.SIGNALS: "ts"}
"""The event-time column of each kind."""
VERSION: Final = ("as_of", "revision")
"""What orders the versions of a key (compared in this order; the highest wins)."""
VALUES: Final = {
    kind: tuple(
        f.name for f in schema if f.name not in KEYS[kind] and f.name not in (*VERSION, "reason")
    )
    for kind, schema in SCHEMAS.items()
}
"""What a version says about its key: a new version with other values is a revision; with
the same values it changes nothing but the version. Between two versions of equal
``VERSION``, the greater ``VALUES`` (compared in this order, a null below any value) wins,
so the outcome never depends on the order of arrival, and the tie is reported."""
_ID: Final = {Kind.TRADES: "trade_id", Kind.QUOTES: "sequence"}
"""The venue's id of a tick: ticks that have one need no ordinal."""


def schema_of(kind: Kind | str) -> pa.Schema:
    return SCHEMAS[Kind(kind)]


def empty(kind: Kind | str) -> pa.Table:
    """A table of ``kind`` with no rows."""
    return SCHEMAS[Kind(kind)].empty_table()


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


# --- checks ----------------------------------------------------------------------------

_MODELS: Final = {Kind.BARS: Bar, Kind.TRADES: Trade, Kind.QUOTES: Quote, Kind.SIGNALS: Signal}
_IDENTIFIER: Final = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
_SIGNAL_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,63}$"
_SIDES: Final = pa.array([side.value for side in TradeSide])
_TS_MIN: Final = to_ns(MIN_TIMESTAMP)
_TS_MAX: Final = to_ns(MAX_TIMESTAMP)
_TIMES: Final = {
    kind: tuple(f.name for f in schema if f.type == TIMESTAMP) for kind, schema in SCHEMAS.items()
}
_FLOATS: Final = {
    kind: tuple(f.name for f in schema if pa.types.is_floating(f.type))
    for kind, schema in SCHEMAS.items()
}
_NON_NEGATIVE: Final = {
    Kind.TRADES: ("size", "ordinal", "revision"),
    Kind.QUOTES: ("bid_size", "ask_size", "sequence", "ordinal", "revision"),
    Kind.BARS: ("volume", "trade_count", "revision"),
    Kind.SIGNALS: ("revision",),
}
_MAX_ORDINAL: Final = 2**31 - 1
_TEXT: Final = {  # free text: (column, shortest, longest)
    Kind.TRADES: (("exchange", 1, 32), ("trade_id", 1, 64), ("reason", 1, 64)),
    Kind.QUOTES: (("exchange", 1, 32), ("reason", 1, 64)),
    Kind.BARS: (("reason", 1, 64),),
    Kind.SIGNALS: (("reason", 1, 64),),
}
_NO_CONTROL: Final = r"^[^\x00-\x1f]*$"


def conform(table: pa.Table, kind: Kind | str | None = None) -> pa.Table:
    """``table`` checked against the core models' rules and cast to ``kind``'s schema
    (columns by name, extra ones dropped, missing nullable ones null; timestamps of any unit
    and zone to nanoseconds UTC, exactly; timeframes in their canonical spelling; ``-0.0``
    as ``0.0``). Raises :class:`ColumnError` naming a bad row and its column (the first that
    breaks the first rule checked)."""
    if kind is None:
        kind = kind_of(table)
        if kind is None:
            msg = f"cannot tell which kind of records the columns {table.column_names} hold"
            raise ColumnError(msg)
    kind = Kind(kind)
    if _conformed(table, kind):
        return table  # conform's own output (tables are immutable): checked already
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
    for name in _FLOATS[kind]:  # -0.0 + 0.0 is 0.0: one zero
        index = schema.get_field_index(name)
        out = out.set_column(index, schema.field(name), pc.add(out.column(index), _lit(0.0)))
    if kind is Kind.BARS:
        out = out.set_column(2, schema.field("timeframe"), _canonical_timeframes(out))
    _remember_conformed(out, kind)
    return out


_CONFORMED: dict[int, tuple[weakref.ref[pa.Table], Kind]] = {}
"""The tables ``conform`` returned, while they live (by identity; an Arrow table never
changes): handed on unchanged, from the pipeline's check to the store's, they are not
checked twice. Anything else (a slice, a table with a column replaced) is checked."""


def _remember_conformed(table: pa.Table, kind: Kind) -> None:
    _CONFORMED[id(table)] = (weakref.ref(table, functools.partial(_forget, id(table))), kind)


def _conformed(table: pa.Table, kind: Kind) -> bool:
    entry = _CONFORMED.get(id(table))
    return entry is not None and entry[0]() is table and entry[1] is kind


def _forget(key: int, ref: weakref.ref[pa.Table]) -> None:
    entry = _CONFORMED.get(key)
    if entry is not None and entry[0] is ref:  # not a newer table at the same address
        del _CONFORMED[key]


def _cast(column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    if field.type == TIMESTAMP:
        if not pa.types.is_timestamp(column.type):
            if pa.types.is_null(column.type):
                return pc.cast(column, field.type)
            msg = f"is {column.type}, not a timestamp with a timezone"
            raise ColumnError(msg, column=field.name)
        if column.type.tz is None:
            msg = "holds timestamps without a timezone (store them in UTC, with tz=UTC)"
            raise ColumnError(msg, column=field.name)
        try:
            return pc.cast(column, TIMESTAMP, safe=True)
        except pa.ArrowInvalid:
            msg = f"holds a time outside [{MIN_TIMESTAMP.year}-01-01, {MAX_TIMESTAMP.year}-01-01)"
            raise ColumnError(msg, column=field.name) from None
    if not _compatible(column.type, field.type):  # as strict as JSON: "10" is no number
        msg = f"is {column.type}, not {field.type}"
        raise ColumnError(msg, column=field.name)
    try:
        return pc.cast(column, field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        msg = f"is {column.type}, cannot be read as {field.type}: {error}"
        raise ColumnError(msg, column=field.name) from None


@functools.lru_cache(maxsize=256, typed=True)
def _lit(value: float) -> pa.Scalar:
    """``value`` as an Arrow scalar, converted once. pyarrow converts a Python number given
    to a compute function anew at every call, and where dateutil is not installed (a plain
    install has no pandas, so no dateutil) every conversion tries to import it and fails:
    about 0.1 ms a call, a fifth of a second over the checks of a million rows."""
    return pa.scalar(value)


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
    if not pc.any(mask).as_py():  # the usual case, and cheaper than a search
        return -1
    return int(pc.index(pc.fill_null(mask, False), value=True).as_py())


def _fail_at(table: pa.Table, mask: Any, column: str, what: str, *, show: bool = True) -> None:
    row = _first(mask)
    if row >= 0:
        shown = f" ({_shown(table.column(column)[row])})" if show else ""
        raise ColumnError(f"{what}{shown}", column=column, row=row)


def _shown(value: pa.Scalar) -> str:
    if pa.types.is_timestamp(value.type):
        return from_ns(value.cast(pa.int64()).as_py()).isoformat()
    return repr(value.as_py())


def _check(table: pa.Table, kind: Kind) -> None:
    for field in SCHEMAS[kind]:
        if not field.nullable:
            _fail_at(
                table, pc.is_null(table.column(field.name)), field.name, "is missing", show=False
            )
    for name in _TIMES[kind]:
        nanos = pc.cast(table.column(name), pa.int64())
        _fail_at(
            table,
            pc.or_(pc.less(nanos, _lit(_TS_MIN)), pc.greater_equal(nanos, _lit(_TS_MAX))),
            name,
            f"is outside [{MIN_TIMESTAMP.year}-01-01, {MAX_TIMESTAMP.year}-01-01)",
        )
    for name in _FLOATS[kind]:
        _fail_at(table, pc.invert(pc.is_finite(table.column(name))), name, "is not a finite number")
    for name in _NON_NEGATIVE[kind]:
        _fail_at(table, pc.less(table.column(name), _lit(0)), name, "is negative")
    if "ordinal" in table.column_names:
        _fail_at(
            table,
            pc.greater(table.column("ordinal"), _lit(_MAX_ORDINAL)),
            "ordinal",
            f"is above {_MAX_ORDINAL}",
        )
    _fail_unless(table, "symbol", SYMBOL_PATTERN, "is not a valid symbol")
    for name, shortest, longest in _TEXT[kind]:
        _check_text(table, table.column(name), name, shortest, longest)
    _fail_unless(table, "reason", _NO_CONTROL, "contains a control character")
    if kind is Kind.TRADES:
        _check_trades(table)
    elif kind is Kind.QUOTES:
        bid, ask = table.column("bid"), table.column("ask")
        _fail_at(table, pc.greater(bid, ask), "bid", "is above the ask (a crossed quote)")
    elif kind is Kind.BARS:
        _check_bars(table)
    else:
        _check_signals(table)


def _fail_unless(table: pa.Table, name: str, pattern: str, what: str) -> None:
    """The first row whose ``name`` does not match ``pattern`` (nulls pass), checked once
    per distinct value (symbols, sources and names repeat: a regex per row would cost more
    than every other check together)."""
    distinct = pc.unique(table.column(name))
    bad = distinct.filter(pc.invert(pc.match_substring_regex(distinct, pattern)))
    if len(bad):
        _fail_at(table, pc.is_in(table.column(name), value_set=bad), name, what)


def _check_text(
    table: pa.Table, column: pa.ChunkedArray, name: str, shortest: int, longest: int
) -> None:
    distinct = pc.unique(column)
    if len(distinct) * 4 < len(column):  # a venue, a reason: the same few values
        length = pc.utf8_length(distinct)
        bad = distinct.filter(
            pc.or_(
                pc.match_substring(distinct, "\x00"),
                pc.or_(pc.less(length, _lit(shortest)), pc.greater(length, _lit(longest))),
            )
        )
        if not len(bad):
            return
    length = pc.utf8_length(column)
    _fail_at(table, pc.match_substring(column, "\x00"), name, "contains a NUL character")
    _fail_at(
        table,
        pc.or_(pc.less(length, _lit(shortest)), pc.greater(length, _lit(longest))),
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
            pc.or_(pc.less(length, _lit(1)), pc.greater(length, _lit(16))),
        )
        where = _first(bad)
        if where >= 0:
            row = int(parents[where].as_py())
            msg = (
                f"each condition must be 1 to 16 characters, without NUL ({flat[where].as_py()!r})"
            )
            raise ColumnError(msg, column="conditions", row=row)


def _check_bars(table: pa.Table) -> None:
    _fail_unless(
        table, "source", _IDENTIFIER, "is not a valid identifier (letters, digits, . _ : -)"
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
    nanos = pc.cast(table.column("start"), pa.int64())
    timeframes = pc.dictionary_encode(table.column("timeframe")).combine_chunks()
    steps = []
    for position, text in enumerate(timeframes.dictionary.to_pylist()):
        try:
            steps.append(Timeframe.parse(text).seconds * 1_000_000_000)
        except ValueError as error:
            row = _first(pc.equal(timeframes.indices, position))
            raise ColumnError(f"{error}", column="timeframe", row=row) from None
    step = pc.take(pa.array(steps, pa.int64()), timeframes.indices)
    remainder = pc.subtract(nanos, pc.multiply(pc.divide(nanos, step), step))
    misaligned = pc.not_equal(remainder, _lit(0))
    # divide truncates toward zero; before 1970 a floor is one step lower, but aligned
    # values are exact multiples either way, so the remainder test holds for both signs
    _fail_at(table, misaligned, "start", "is not aligned to its timeframe")


def _canonical_timeframes(table: pa.Table) -> pa.ChunkedArray:
    encoded = pc.dictionary_encode(table.column("timeframe")).combine_chunks()
    names = pa.array([str(Timeframe.parse(t)) for t in encoded.dictionary.to_pylist()], pa.string())
    return pa.chunked_array([pc.take(names, encoded.indices)])


def _check_signals(table: pa.Table) -> None:
    _fail_unless(
        table, "source", _IDENTIFIER, "is not a valid identifier (letters, digits, . _ : -)"
    )
    _fail_unless(table, "name", _SIGNAL_NAME, "is not a valid signal name")
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


# --- models ----------------------------------------------------------------------------

_OPTIONAL: Final = {
    Kind.TRADES: (
        "exchange", "trade_id", "side", "conditions", "received_at", "ordinal", "as_of",
        "reason",
    ),
    Kind.QUOTES: ("exchange", "sequence", "received_at", "ordinal", "as_of", "reason"),
    Kind.BARS: ("trade_count", "vwap", "as_of", "reason"),
    Kind.SIGNALS: ("score", "metadata", "as_of", "reason"),
}  # fmt: skip
"""Nullable columns whose null is the model's default (left out of the model's input)."""


def to_models(
    table: pa.Table,
    kind: Kind | str | None = None,
    *,
    lenient: bool = False,
    trusted: bool = False,
) -> list[Any]:
    """Core models (validated) of a table's rows; timestamps keep their nanoseconds.
    ``lenient``: a row that breaks the models' rules (a table that skipped ``conform``)
    becomes a model as it is, unvalidated, instead of raising: what must be kept, such as a
    dead letter, is kept. ``trusted``: rows a store checked on the way in, read back: built
    without validating them again (several times faster), equal to the validated models."""
    found = Kind(kind) if kind is not None else kind_of(table)
    if found is None:
        msg = f"not a table of trades, quotes, bars or signals: {table.schema}"
        raise ValueError(msg)
    model: Any = _MODELS[found]
    names = [f.name for f in SCHEMAS[found] if f.name in table.column_names]
    columns: dict[str, list[Any]] = {}
    for name in names:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            nanos = pc.cast(column, pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_pylist()
            columns[name] = _datetimes(nanos)
        elif name == "metadata":
            columns[name] = [None if t is None else json.loads(t) for t in column.to_pylist()]
        else:
            columns[name] = column.to_pylist()
    if trusted:
        return _constructed(model, found, columns)
    optional = _OPTIONAL[found]
    out = []
    for values in zip(*columns.values(), strict=True):
        row = {
            name: value
            for name, value in zip(names, values, strict=True)
            if value is not None or name not in optional
        }
        if "revision" in row and row["revision"] is None:
            del row["revision"]
        if lenient:
            try:
                out.append(model.model_validate(row))
            except ValueError:  # kept as it is (a dead letter must not be lost)
                out.append(model.model_construct(**row))
        else:
            out.append(model.model_validate(row))
    return out


def _datetimes(nanos: list[int | None]) -> list[Any]:
    """Datetimes of nanoseconds since the epoch (``None`` kept), each distinct one made once
    when they repeat (a batch's versions)."""
    distinct = set(nanos)
    if len(distinct) * 4 > len(nanos):
        return [None if n is None else from_ns(n) for n in nanos]
    made = {n: None if n is None else from_ns(n) for n in distinct}
    return list(map(made.__getitem__, nanos))


def _constructed(model: Any, kind: Kind, columns: dict[str, list[Any]]) -> list[Any]:
    """Models of valid columns without validation: the values given the models' types."""
    rows = len(next(iter(columns.values()), ()))
    if "timeframe" in columns:
        parsed = {text: Timeframe.parse(text) for text in set(columns["timeframe"])}
        columns["timeframe"] = [parsed[text] for text in columns["timeframe"]]
    if "side" in columns:
        columns["side"] = [None if v is None else TradeSide(v) for v in columns["side"]]
    if "conditions" in columns:
        columns["conditions"] = [() if v is None else tuple(v) for v in columns["conditions"]]
    if "metadata" in columns:
        columns["metadata"] = [{} if v is None else v for v in columns["metadata"]]
    if "revision" in columns:
        columns["revision"] = [0 if v is None else v for v in columns["revision"]]
    for field in SCHEMAS[kind]:
        if field.name not in columns:
            default = model.model_fields[field.name].get_default(call_default_factory=True)
            columns[field.name] = [default] * rows
    names = list(columns)
    new, set_ = object.__new__, object.__setattr__

    def build(values: tuple[Any, ...]) -> Any:
        # what BaseModel.model_construct does, without its per-call overhead: the values
        # are the model's own fields, all given (the models hold no extra, no private)
        instance = new(model)
        set_(instance, "__dict__", dict(zip(names, values, strict=True)))
        set_(instance, "__pydantic_fields_set__", set(names))
        set_(instance, "__pydantic_extra__", None)
        set_(instance, "__pydantic_private__", None)
        return instance

    return list(map(build, zip(*columns.values(), strict=True)))


def from_models(models: Iterable[Any], kind: Kind | str | None = None) -> pa.Table:
    """A table of core models of one kind (timestamps to the nanosecond). Column by
    column: a field's values are gathered in C (``itemgetter``), and timestamps become Arrow
    in C too unless one of them has nanoseconds."""
    items = list(models)
    if kind is None:
        if not items:
            msg = "cannot infer the kind of an empty list of records; pass kind="
            raise ValueError(msg)
        kind = _kind_of_model(type(items[0]))
    kind = Kind(kind)
    schema = SCHEMAS[kind]
    fields = [m.__dict__ for m in items]
    columns: dict[str, Any] = {}
    for field in schema:
        values = list(map(itemgetter(field.name), fields))
        if field.type == TIMESTAMP:
            columns[field.name] = _timestamps(values)
            continue
        if field.name == "timeframe":
            values = _texts(values)
        elif field.name == "conditions":
            values = [list(v) or None for v in values]
        elif field.name == "metadata":
            values = [json.dumps(v, sort_keys=True) if v else None for v in values]
        elif field.name == "side":
            values = [None if v is None else str(v) for v in values]
        columns[field.name] = pa.array(values, field.type)
    return pa.table(columns, schema=schema)


_MICROS: Final = pa.timestamp("us", tz="UTC")
_NAIVE_MICROS: Final = pa.timestamp("us")


def _timestamps(values: list[Any]) -> pa.Array:
    """Datetimes (or ``None``) as a ``TIMESTAMP`` array, exactly."""
    if NanoDatetime in set(map(type, values)):
        return pa.array([None if v is None else to_ns(v) for v in values], pa.int64()).cast(
            TIMESTAMP
        )
    # every value is UTC (the models normalise it): read as wall time, which is far faster
    # in pyarrow than converting aware datetimes one by one, then labelled UTC; times that
    # repeat (a batch's bar starts and versions) are converted once
    distinct = dict.fromkeys(values)
    if len(distinct) * 4 > len(values):
        return pa.array(values, _NAIVE_MICROS).cast(TIMESTAMP)
    index = {value: i for i, value in enumerate(distinct)}
    converted = pa.array(list(distinct), _NAIVE_MICROS).cast(TIMESTAMP)
    return converted.take(pa.array(list(map(index.__getitem__, values)), pa.int32()))


def _texts(values: list[Any]) -> list[str]:
    """``str`` of each value, once per distinct object (timeframes repeat)."""
    ids = list(map(id, values))
    distinct = dict(zip(ids, values, strict=True))  # the values stay alive in ``values``
    names = {key: str(value) for key, value in distinct.items()}
    return list(map(names.__getitem__, ids))


def _kind_of_model(model: type[Any]) -> Kind:
    for kind, cls in _MODELS.items():
        if model is cls:
            return kind
    msg = "pass kind= for records that are not a list of Trade, Quote, Bar or Signal"
    raise ValueError(msg)


# --- versions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latest:
    """What :func:`latest_per_key` kept: the table, and how many keys had two versions of
    equal ``VERSION`` with different ``VALUES`` (resolved by the values, and reported)."""

    table: pa.Table
    conflicts: int


def latest_per_key(table: pa.Table, kind: Kind | str, keys: Sequence[str] | None = None) -> Latest:
    """The newest version of each key of ``table`` (any table with the kind's key, version
    and value columns), in the order of the rows kept. ``keys`` overrides the key columns
    (a store keeps text keys as ``''`` instead of null)."""
    kind = Kind(kind)
    rows = table.num_rows
    key = list(keys or KEYS[kind])
    if rows < 2:
        return Latest(table, 0)
    counted = table.select(key).group_by(key, use_threads=False).aggregate([([], "count_all")])
    if counted.num_rows == rows:
        return Latest(table, 0)  # no key twice: the common case
    order = [*key, *VERSION, *VALUES[kind]]
    position = pa.array(np.arange(rows, dtype=np.int64))
    ranked = table.select(order).append_column("_row", position)
    sort = [(name, "ascending", "at_start") for name in order] + [("_row", "ascending", "at_start")]
    sorted_ = ranked.take(pc.sort_indices(ranked, sort_keys=sort))
    same_key = _same_as_next(sorted_, key)
    last = np.append(~same_key, True)
    same_version = same_key & _same_as_next(sorted_, [*key, *VERSION])
    tied = same_version & ~_same_as_next(sorted_, [*key, *VERSION, *VALUES[kind]])
    # a key is in conflict when its kept version's run (rows of its key and version)
    # holds other values: a tie between two neighbours of that run
    run_start = np.maximum.accumulate(np.where(np.append(True, ~same_version), np.arange(rows), 0))
    ties_before = np.concatenate(([0], np.cumsum(tied)))  # ties among rows [0, i)
    kept_rows = np.flatnonzero(last)
    conflicts = int(np.count_nonzero(ties_before[kept_rows] > ties_before[run_start[kept_rows]]))
    kept = np.sort(np.asarray(sorted_.column("_row").to_numpy())[last])
    return Latest(table.take(pa.array(kept)), conflicts)


def _same_as_next(table: pa.Table, names: Sequence[str]) -> Any:
    """Per row but the last: whether the next row has equal values in ``names`` (nulls
    equal to nulls)."""
    same = np.ones(table.num_rows - 1, dtype=bool)
    for name in names:
        column = table.column(name).combine_chunks()
        head, tail = column.slice(0, len(column) - 1), column.slice(1)
        equal = pc.fill_null(pc.equal(head, tail), False)
        both_null = pc.and_(pc.is_null(head), pc.is_null(tail))
        same &= np.asarray(pc.or_(equal, both_null).to_numpy(zero_copy_only=False))
    return same


# --- ordinals --------------------------------------------------------------------------


class Ordinals:
    """Gives ticks without a venue id (a trade without ``trade_id``, a quote without
    ``sequence``) their ``ordinal``: 0, 1, 2... among the ticks of one source with the same
    symbol, ``ts`` and exchange, in the order the source gives them, across batches: the
    same input cut into batches of any size gets the same ordinals. Ticks with a venue id
    get 0; a given ordinal is kept.

    One instance per source (a file, a feed, an ingest request). It remembers how many
    ticks it saw of each (instant, symbol, exchange) of the last ``window_ns`` of event time
    behind the newest tick; a tick further behind than that is counted in
    ``beyond_window`` (its ordinal counts only what is remembered). Symbol and exchange are
    remembered as a 64-bit hash: two series that share one share counters, so their ticks
    of one instant get distinct ordinals all the same (distinct ticks never merge).

    Input in time order, the common case, costs a few vector operations per batch: a tick
    later than everything remembered cannot repeat a remembered one, and two ticks of one
    batch can only be the same instant if their times are equal neighbours."""

    def __init__(self, window_ns: int = 600 * 1_000_000_000) -> None:
        self.window_ns = window_ns
        self.beyond_window = 0
        self._codes: dict[str | None, int] = {}
        # what is remembered, sorted by (ts, series hash), one entry per distinct pair
        self._ts = np.empty(0, dtype=np.int64)
        self._series = np.empty(0, dtype=np.uint64)
        self._counts = np.empty(0, dtype=np.int64)

    def assign(self, table: pa.Table, kind: Kind | str) -> pa.Table:
        """``table`` (trades or quotes) with every null ``ordinal`` filled."""
        kind = Kind(kind)
        if kind not in _ID:
            return table
        rows = table.num_rows
        names = table.column_names
        given = table.column("ordinal") if "ordinal" in names else pa.nulls(rows, pa.int64())
        if given.null_count == 0 and "ordinal" in names:
            return table
        venue = table.column(_ID[kind]) if _ID[kind] in names else pa.nulls(rows, pa.int64())
        todo = np.asarray(
            pc.and_(pc.is_null(given), pc.is_null(venue)).to_numpy(zero_copy_only=False)
        )
        ordinals = np.zeros(rows, dtype=np.int64)
        rows_todo = np.flatnonzero(todo)
        if len(rows_todo):
            ticks = table if len(rows_todo) == rows else table.take(pa.array(rows_todo))
            ordinals[rows_todo] = self._ordinals(ticks)
        filled = pc.if_else(pc.is_null(given), pa.array(ordinals), given)
        if "ordinal" in names:
            out = table.set_column(names.index("ordinal"), "ordinal", filled)
        else:
            out = table.append_column("ordinal", filled)
        if (
            _conformed(table, kind)
            and out.schema.equals(table.schema)
            and int(ordinals.max(initial=0)) <= _MAX_ORDINAL
        ):
            # conform's output with only null ordinals filled, by counts (0 <= n, checked
            # below the limit): as conform would return it, so not checked again
            _remember_conformed(out, kind)
        return out

    def _code(self, column: pa.ChunkedArray | pa.Array | None, rows: int) -> Any:
        """A stable small integer per distinct value (``None`` included), per row."""
        if column is None:
            return np.full(rows, self._codes.setdefault(None, len(self._codes)), np.uint64)
        encoded = pc.dictionary_encode(column)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        lookup = np.asarray(
            [self._codes.setdefault(v, len(self._codes)) for v in encoded.dictionary.to_pylist()]
            or [0],
            dtype=np.uint64,
        )
        indices = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(), dtype=np.int64)
        null = self._codes.setdefault(None, len(self._codes))
        return np.where(indices >= 0, lookup[np.maximum(indices, 0)], np.uint64(null))

    def _ordinals(self, ticks: pa.Table) -> Any:
        n = ticks.num_rows
        ts = np.asarray(
            pc.cast(ticks.column("ts"), pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64
        )
        exchange = ticks.column("exchange") if "exchange" in ticks.column_names else None
        with np.errstate(over="ignore"):
            series = _mix(
                self._code(ticks.column("symbol"), n) * np.uint64(0x9E3779B1)
                + self._code(exchange, n)
            )
        newest = int(self._ts[-1]) if len(self._ts) else None
        if newest is not None:
            self.beyond_window += int(np.count_nonzero(ts < newest - self.window_ns))
        in_order = n < 2 or bool(np.all(ts[1:] >= ts[:-1]))
        if in_order and (newest is None or ts[0] > newest):
            ordinals, unique_ts, unique_series, counts = _in_order(ts, series)
            self._remember(unique_ts, unique_series, counts, appended=True)
            return ordinals
        return self._any_order(ts, series)

    def _any_order(self, ts: Any, series: Any) -> Any:
        """Ordinals of a batch in any order: within it by a stable sort, before it by the
        remembered counts."""
        order = np.lexsort((np.arange(len(ts)), series, ts))
        sorted_ts, sorted_series = ts[order], series[order]
        first = np.append(
            True, (sorted_ts[1:] != sorted_ts[:-1]) | (sorted_series[1:] != sorted_series[:-1])
        )
        starts = np.flatnonzero(first)
        runs = np.diff(np.append(starts, len(order)))
        unique_ts, unique_series = sorted_ts[starts], sorted_series[starts]
        before = self._lookup(unique_ts, unique_series)
        within = np.arange(len(order)) - np.repeat(starts, runs) + np.repeat(before, runs)
        ordinals = np.empty(len(order), dtype=np.int64)
        ordinals[order] = within
        self._remember(unique_ts, unique_series, runs, appended=False)
        return ordinals

    def _lookup(self, ts: Any, series: Any) -> Any:
        """The remembered count of each (ts, series) pair (sorted by ts): 0 when unknown."""
        counts = np.zeros(len(ts), dtype=np.int64)
        if not len(self._ts):
            return counts
        low = np.searchsorted(self._ts, ts, side="left")
        high = np.searchsorted(self._ts, ts, side="right")
        for i in np.flatnonzero(high > low):  # instants remembered: a few entries each
            match = np.flatnonzero(self._series[low[i] : high[i]] == series[i])
            if len(match):
                counts[i] = self._counts[low[i] + match[0]]
        return counts

    def _remember(self, ts: Any, series: Any, counts: Any, *, appended: bool) -> None:
        """Add the batch's pairs (sorted by ts, each once, with its count); forget those
        older than the window."""
        if appended:  # all later than what is remembered: the order holds
            all_ts = np.concatenate((self._ts, ts))
            all_series = np.concatenate((self._series, series))
            all_counts = np.concatenate((self._counts, counts))
        else:
            merged_ts = np.concatenate((self._ts, ts))
            merged_series = np.concatenate((self._series, series))
            merged_counts = np.concatenate((self._counts, counts))
            order = np.lexsort((merged_series, merged_ts))
            merged_ts, merged_series = merged_ts[order], merged_series[order]
            merged_counts = merged_counts[order]
            first = np.append(
                True,
                (merged_ts[1:] != merged_ts[:-1]) | (merged_series[1:] != merged_series[:-1]),
            )
            starts = np.flatnonzero(first)
            all_ts, all_series = merged_ts[starts], merged_series[starts]
            all_counts = np.add.reduceat(merged_counts, starts) if len(starts) else merged_counts
        if len(all_ts):
            keep_from = int(np.searchsorted(all_ts, all_ts[-1] - self.window_ns, side="left"))
            all_ts, all_series, all_counts = (
                all_ts[keep_from:],
                all_series[keep_from:],
                all_counts[keep_from:],
            )
        self._ts, self._series, self._counts = all_ts, all_series, all_counts


def _in_order(ts: Any, series: Any) -> tuple[Any, Any, Any, Any]:
    """Ordinals of a batch in time order that repeats nothing remembered, and its distinct
    (ts, series) pairs (sorted by ts, then series) with their counts."""
    n = len(ts)
    ordinals = np.zeros(n, dtype=np.int64)
    same = ts[1:] == ts[:-1] if n > 1 else np.zeros(0, dtype=bool)
    if not same.any():
        return ordinals, ts, series, np.ones(n, dtype=np.int64)
    # only ticks of an instant shared with a neighbour can repeat each other
    order = np.lexsort((np.arange(n), series, ts))
    sorted_ts, sorted_series = ts[order], series[order]
    first = np.append(
        True, (sorted_ts[1:] != sorted_ts[:-1]) | (sorted_series[1:] != sorted_series[:-1])
    )
    starts = np.flatnonzero(first)
    runs = np.diff(np.append(starts, n))
    ordinals[order] = np.arange(n) - np.repeat(starts, runs)
    return ordinals, sorted_ts[starts], sorted_series[starts], runs


def _mix(values: Any) -> Any:
    """splitmix64's finalizer: a 64-bit hash of 64-bit integers (vectorized)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

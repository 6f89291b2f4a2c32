"""Built-in named functions for ``map``, ``flat_map``, ``filter``, ``key_by`` and ``router``.

Functions work on whole batches (DESIGN §6): each takes a ``pyarrow.Table`` and returns

- a table, for ``map`` (same number of rows) and ``flat_map`` (any number of rows);
- a boolean array with one value per row, for ``filter`` (``True`` keeps the row);
- an array with one key per row, for ``key_by`` and ``router``.

Configs name them (``fn: mid``); they are registered with
:func:`~market_data_pipeline.named.register_function` (also importable from
``market_data_pipeline.registry``) when this module is imported.
Built-ins:

- ``mid``: quotes get a ``mid`` column, ``(bid + ask) / 2``.
- ``spread``: quotes get a ``spread`` column, ``ask - bid``.
- ``notional``: trades get a ``notional`` column, ``price * size``.
- ``symbol_root``: the symbol up to its first ``.``, ``/`` or ``=`` (``BTC/USDT`` -> ``BTC``,
  ``6EH4.XCME`` -> ``6EH4``, ``ES=F`` -> ``ES``), a key.

For users who prefer to think in rows, :func:`rowwise` turns a per-row function into a batch
function (at the cost of Python work per row).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from market_data_core.timestamps import to_ns
from market_data_pipeline.named import function, register_function
from market_data_pipeline.records import datetimes

__all__ = [
    "BatchFunction",
    "KeySelector",
    "as_array",
    "mid",
    "notional",
    "resolve",
    "rowwise",
    "spread",
    "symbol_root",
    "with_column",
]

BatchFunction = Callable[[pa.Table], Any]
"""A named function: a table in, a table, a mask or an array of keys out."""


def resolve(name: str) -> BatchFunction:
    """The function registered as ``name`` (built-ins included); ``GraphError`` if unknown."""
    return function(name)


def as_array(result: Any, rows: int, *, name: str, what: str) -> pa.Array | pa.ChunkedArray:
    """The array a function returned (numpy arrays and lists are converted), one per row.

    ``TypeError``/``ValueError`` name the function and say what it should have returned.
    """
    if not isinstance(result, pa.Array | pa.ChunkedArray):
        if isinstance(result, pa.Table):
            msg = f"function {name!r} returned a table; it must return {what}"
            raise TypeError(msg)
        try:
            result = pa.array(result)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
            msg = f"function {name!r} must return {what}, not {type(result).__name__}: {error}"
            raise TypeError(msg) from None
    if len(result) != rows:
        msg = f"function {name!r} returned {len(result)} values for {rows} rows: it must return"
        msg = f"{msg} {what}"
        raise ValueError(msg)
    return result


class KeySelector:
    """The key of each row: a field's values, or what a registered key function returns.

    Exactly one of ``field`` and ``fn``; ``operator`` names the operator in errors.
    """

    def __init__(self, *, field: str | None, fn: str | None, operator: str) -> None:
        if (field is None) == (fn is None):
            msg = "give exactly one of field or fn"
            raise ValueError(msg)
        self.field = field
        self.fn_name = fn
        self.fn = resolve(fn) if fn is not None else None
        self.operator = operator

    def __call__(self, batch: pa.Table) -> pa.Array | pa.ChunkedArray:
        if self.fn is not None:
            what = "an array of keys, one per row"
            return as_array(self.fn(batch), batch.num_rows, name=str(self.fn_name), what=what)
        if self.field not in batch.column_names:
            msg = (
                f"{self.operator}: the batch has no field {self.field!r}"
                f" ({', '.join(batch.column_names)})"
            )
            raise ValueError(msg)
        return batch.column(self.field)


def with_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with the column ``name`` added at the end, or replaced where it is."""
    index = table.schema.get_field_index(name)
    if index >= 0:
        return table.set_column(index, name, values)
    return table.append_column(name, values)


@register_function("mid")
def mid(table: pa.Table) -> pa.Table:
    """Quotes with a ``mid`` column: ``(bid + ask) / 2``."""
    total = pc.add(table.column("bid"), table.column("ask"))
    return with_column(table, "mid", pc.divide(total, 2.0))


@register_function("spread")
def spread(table: pa.Table) -> pa.Table:
    """Quotes with a ``spread`` column: ``ask - bid``."""
    return with_column(table, "spread", pc.subtract(table.column("ask"), table.column("bid")))


@register_function("notional")
def notional(table: pa.Table) -> pa.Table:
    """Trades with a ``notional`` column: ``price * size``."""
    return with_column(table, "notional", pc.multiply(table.column("price"), table.column("size")))


@register_function("symbol_root")
def symbol_root(table: pa.Table) -> pa.ChunkedArray:
    """The symbol up to its first ``.``, ``/`` or ``=``, one per row (a key)."""
    return pc.replace_substring_regex(table.column("symbol"), pattern=r"[./=].*$", replacement="")


def rowwise(fn: Callable[[dict[str, Any]], Any]) -> BatchFunction:
    """Adapt a function of one row (a ``dict``) into a batch function.

    What the row function returns decides what the batch function returns:

    - a ``dict`` per row: a table (for ``map``); columns that the input has keep its types;
    - a ``list`` of dicts (or ``None``) per row: a table of all of them (for ``flat_map``);
    - a ``bool`` per row: a boolean mask (for ``filter``);
    - anything else: an array of keys (for ``key_by`` and ``router``).

    An empty table comes back unchanged (the operators never call functions with one)::

        @register_function("big")
        @rowwise
        def big(row: dict[str, Any]) -> bool:
            return row["size"] >= 1000
    """

    @functools.wraps(fn)
    def batch(table: pa.Table) -> Any:
        if table.num_rows == 0:
            return table
        results = [fn(row) for row in _rows(table)]
        first = next((r for r in results if r is not None), None)
        if isinstance(first, dict):
            if any(result is None for result in results):
                msg = f"row function {fn.__name__!r} returned None for a row, not a dict"
                raise TypeError(msg)
            return _to_table(results, table.schema)
        if isinstance(first, list) or first is None:
            rows = [row for result in results if result for row in result]
            return _to_table(rows, table.schema) if rows else table.schema.empty_table()
        if isinstance(first, bool):
            return pa.array(results, type=pa.bool_())
        return pa.array(results)

    return batch


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of a table as dicts; timestamps as datetimes that keep their nanoseconds
    (core's ``NanoDatetime``), with or without pandas."""
    columns = {
        name: _values(column)
        for name, column in zip(table.column_names, table.columns, strict=True)
    }
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _values(column: pa.ChunkedArray) -> list[Any]:
    if not pa.types.is_timestamp(column.type):
        values: list[Any] = column.to_pylist()
        return values
    if column.type.tz is not None:
        return datetimes(column)
    # a column without a zone holds wall times: naive datetimes
    aware = datetimes(column.cast(pa.timestamp(column.type.unit, tz="UTC")))
    return [None if v is None else v.replace(tzinfo=None) for v in aware]


def _typed(values: list[Any], kind: pa.DataType) -> pa.Array:
    """Values as an array of ``kind``; datetimes into a timestamp column keep their
    nanoseconds (``pyarrow`` would drop a ``NanoDatetime``'s)."""
    if pa.types.is_timestamp(kind):
        nanos = [_nanos(v) if isinstance(v, datetime) else v for v in values]
        return pa.array(nanos, pa.int64()).cast(pa.timestamp("ns", tz=kind.tz)).cast(kind)
    return pa.array(values, type=kind)


def _nanos(value: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime; of a naive one, its wall time
    (what a column without a zone holds)."""
    return to_ns(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


def _to_table(rows: list[dict[str, Any]], like: pa.Schema) -> pa.Table:
    """A table of ``rows``; a column named as one of ``like``'s keeps that field if it can."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    arrays, fields = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        array = None
        if name in like.names:
            field = like.field(name)
            try:
                array = _typed(values, field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, ValueError):
                array = None
        if array is None:
            array = pa.array(values)
            field = pa.field(name, array.type)
        arrays.append(array)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

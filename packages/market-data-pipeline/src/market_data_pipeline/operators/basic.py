"""``map``, ``flat_map``, ``filter`` and ``key_by``: the stateless operators.

Each works on whole batches with a named function (see :mod:`market_data_pipeline.functions`)
or, for ``filter`` and ``key_by``, declaratively on a field, computed with
``pyarrow.compute``. Empty batches are passed over (functions never see one).

``filter``'s declarative form compares ``field`` with ``value`` by ``op``; the value is cast
to the field's type when it can be (``"2024-01-02T14:30:00Z"`` for a timestamp). Nulls
follow Python: a null field matches ``== null``, ``!= <anything else>``, ``in`` a list
holding null and ``not_in`` a list without it; ordering comparisons never match it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

import pyarrow as pa
import pyarrow.compute as pc

from market_data_pipeline.components import Emit, Operator, Params
from market_data_pipeline.functions import KeySelector, as_array, resolve, with_column

__all__ = [
    "Filter",
    "FilterParams",
    "FlatMap",
    "KeyBy",
    "KeyByParams",
    "Map",
    "MapParams",
]

Comparison = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in"]

_COMPARE: Final = {
    "==": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
KEY: Final = "key"
"""The column :class:`KeyBy` writes."""


class MapParams(Params):
    fn: str
    """A registered function: a table in, a table of as many rows out."""


class FlatMap(Operator[MapParams]):
    """Applies a function to each batch; it may return more or fewer rows (or none)."""

    Params = MapParams
    description: ClassVar[str] = "Apply a named function to each batch (any number of rows)."

    def __init__(self, node_id: str, params: MapParams) -> None:
        super().__init__(node_id, params)
        self.fn = resolve(params.fn)

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        return None  # the function decides

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        if batch.num_rows == 0:
            return
        out = self.fn(batch)
        _check_table(out, self.params.fn)
        self._check_rows(batch, out)
        await emit(out)

    def _check_rows(self, batch: pa.Table, out: pa.Table) -> None:
        """Any number of rows is fine for flat_map."""


class Map(FlatMap):
    """Applies a function to each batch; it returns a table with as many rows."""

    description: ClassVar[str] = "Apply a named function to each batch (same number of rows)."

    def _check_rows(self, batch: pa.Table, out: pa.Table) -> None:
        if out.num_rows != batch.num_rows:
            msg = (
                f"map function {self.params.fn!r} returned {out.num_rows} rows for"
                f" {batch.num_rows}; use flat_map to change the number of rows"
            )
            raise ValueError(msg)


def _check_table(out: Any, name: str) -> None:
    if not isinstance(out, pa.Table):
        msg = f"function {name!r} must return a pyarrow.Table, not {type(out).__name__}"
        raise TypeError(msg)


class FilterParams(Params):
    """Either ``fn`` (a registered mask function) or ``field`` + ``op`` + ``value``."""

    fn: str | None = None
    field: str | None = None
    op: Comparison | None = None
    value: Any = None
    """A scalar, or a list for ``in`` / ``not_in``; ``null`` for ``==``/``!=`` tests nulls."""


class Filter(Operator[FilterParams]):
    """Keeps the rows that match; counts the others as ``filtered``."""

    Params = FilterParams
    description: ClassVar[str] = "Keep rows matching a named mask function or field/op/value."

    def __init__(self, node_id: str, params: FilterParams) -> None:
        super().__init__(node_id, params)
        declarative = (params.field, params.op, "value" in params.model_fields_set)
        if params.fn is not None:
            if any(declarative):
                msg = "give either fn or field/op/value, not both"
                raise ValueError(msg)
            self.fn = resolve(params.fn)
        elif not all(declarative):
            msg = "give either fn, or field, op and value (all three)"
            raise ValueError(msg)
        self._value = _filter_value(params.op, params.value)
        self._cast: dict[pa.DataType, Any] = {}

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        if batch.num_rows == 0:
            return
        mask = self._mask(batch)
        kept = batch.filter(mask)
        if removed := batch.num_rows - kept.num_rows:
            self.context.count("filtered", removed)
        await emit(kept)

    def _mask(self, batch: pa.Table) -> pa.Array | pa.ChunkedArray:
        if self.params.fn is not None:
            what = "a boolean mask, one value per row"
            mask = as_array(self.fn(batch), batch.num_rows, name=self.params.fn, what=what)
            if not pa.types.is_boolean(mask.type):
                msg = f"function {self.params.fn!r} returned {mask.type}: it must return {what}"
                raise TypeError(msg)
            return pc.fill_null(mask, False)
        field = self.params.field
        assert field is not None
        if field not in batch.column_names:
            msg = f"filter: the batch has no field {field!r} ({', '.join(batch.column_names)})"
            raise ValueError(msg)
        column = batch.column(field)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        return self._compare(column)

    def _compare(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        op = self.params.op
        value = self._typed_value(column.type)
        try:
            if op in {"in", "not_in"}:
                found = pc.is_in(column, value_set=value)
                return pc.invert(found) if op == "not_in" else found
            if self.params.value is None:
                return pc.is_null(column) if op == "==" else pc.is_valid(column)
            matched = _COMPARE[str(op)](column, value)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            msg = (
                f"filter: cannot compare field {self.params.field!r} ({column.type})"
                f" {op} {self.params.value!r}: {error}"
            )
            raise ValueError(msg) from None
        return pc.fill_null(matched, op == "!=")

    def _typed_value(self, type_: pa.DataType) -> Any:
        """The value cast to the field's type when it casts (else as is); cached per type."""
        if type_ not in self._cast:
            try:
                self._cast[type_] = self._value.cast(type_)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                self._cast[type_] = self._value
        return self._cast[type_]


def _filter_value(op: Comparison | None, value: Any) -> Any:
    """The filter's value as an Arrow scalar, or array for ``in``/``not_in``."""
    if op is None:
        return None
    many = op in {"in", "not_in"}
    if value is None and op not in {"==", "!="}:
        msg = f"op {op!r} cannot compare with null (use == or != to test for nulls)"
        raise ValueError(msg)
    if many != isinstance(value, list | tuple):
        msg = f"op {op!r} needs {'a list' if many else 'a single value'}, not {value!r}"
        raise ValueError(msg)
    try:
        return pa.array(value) if many else pa.scalar(value)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
        msg = f"cannot use {value!r} as a value: {error}"
        raise ValueError(msg) from None


class KeyByParams(Params):
    """Either ``field`` (its values, as strings) or ``fn`` (a registered key function)."""

    field: str | None = None
    fn: str | None = None


class KeyBy(Operator[KeyByParams]):
    """Adds (or overwrites) a string column ``key``: a field's values or a function's keys."""

    Params = KeyByParams
    description: ClassVar[str] = "Add a string column 'key' from a field or a named function."

    def __init__(self, node_id: str, params: KeyByParams) -> None:
        super().__init__(node_id, params)
        self._keys = KeySelector(field=params.field, fn=params.fn, operator="key_by")

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        if given is None:
            return None
        kept = [f for f in given if f.name != "key"]
        return pa.schema([*kept, pa.field("key", pa.string())])

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        if batch.num_rows == 0:
            return
        await emit(with_column(batch, KEY, _as_strings(self._keys(batch))))


def _as_strings(keys: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_string(keys.type):
        return keys
    if pa.types.is_dictionary(keys.type):
        keys = keys.cast(keys.type.value_type)
    return keys.cast(pa.string())

"""``tumbling_window`` and ``sliding_window``: per-key aggregates over event-time windows.

Any table with a key field (``key``, default ``symbol``) and a timestamp field
(``time_field``, default ``ts``) can be windowed. ``aggregations`` maps each output column
to ``{field, fn}`` with ``fn`` one of ``count`` (rows, or non-null values of ``field``),
``sum``, ``min``, ``max``, ``mean`` (numeric fields, nulls ignored; null when a window has
no value), ``first`` and ``last`` (the value of the earliest / latest event; ties go to
the earliest / latest arrival).

Tumbling windows of ``size`` are aligned to the UNIX epoch; sliding windows of ``size``
start every ``slide``, so a record is in about ``size / slide`` windows. Windows fire,
re-fire and purge by the event-time rules of ``_eventtime``; late rows go to the ``late``
output. A record of a sliding window is late only when all its windows were purged (it
still updates those of its windows that are kept, as Flink does).

Output: the key column, ``start`` and ``end`` (``timestamp[ns, UTC]``), ``as_of`` (the
latest ``as_of`` of the window's rows: when what it aggregates was known; null when no row
had one), then the aggregates in the order given, sorted by (start, key).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal, Self, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from market_data_core import Timeframe
from market_data_pipeline import records
from market_data_pipeline.components import Params
from market_data_pipeline.exceptions import RecordError
from market_data_pipeline.operators._eventtime import (
    EventTimeOperator,
    EventTimeParams,
    Extracted,
    Rule,
    Values,
    Windowed,
    WindowSpec,
    as_of_array,
    as_of_values,
    int64_times,
)

__all__ = [
    "Aggregation",
    "SlidingWindow",
    "SlidingWindowParams",
    "TumblingWindow",
    "TumblingWindowParams",
]

Fn = Literal["count", "sum", "min", "max", "mean", "first", "last"]
_NUMERIC: Final = frozenset({"sum", "min", "max", "mean"})
_RESERVED: Final = frozenset({"start", "end", "as_of"})
_AS_OF: Final = "_as_of"
"""The state column of the windows' version time (the aggregations' end in ``.n`` or
``.v``: no clash)."""
_ONE: Final = np.asarray(1, dtype=np.int64)
"""Every row counts once (a 0-d array: see ``Extracted``)."""


class Aggregation(Params):
    """One output column: ``fn`` of ``field`` over each window."""

    fn: Fn
    field: str | None = Field(default=None, description="Input field (optional for count).")

    @model_validator(mode="after")
    def _needs_field(self) -> Self:
        if self.field is None and self.fn != "count":
            msg = f"{self.fn} needs a field"
            raise ValueError(msg)
        return self


def _count_rows() -> dict[str, Aggregation]:
    return {"count": Aggregation(fn="count")}


class TumblingWindowParams(EventTimeParams):
    size: Timeframe = Field(description="Window length: 1s, 1m, 5m, 1h, 1d...")
    key: str = Field(default="symbol", min_length=1, description="Field to group by.")
    time_field: str = Field(default="ts", min_length=1, description="Event-time field.")
    aggregations: dict[str, Aggregation] = Field(
        default_factory=_count_rows, min_length=1, description="Output column -> {field, fn}."
    )

    @model_validator(mode="after")
    def _names(self) -> Self:
        clash = ({self.key} | _RESERVED) & set(self.aggregations)
        if clash:
            msg = f"aggregation names clash with the key or window columns: {sorted(clash)}"
            raise ValueError(msg)
        return self


class SlidingWindowParams(TumblingWindowParams):
    slide: Timeframe = Field(description="Time between window starts (at most size).")

    @model_validator(mode="after")
    def _slide(self) -> Self:
        if self.slide > self.size:
            msg = f"slide ({self.slide}) must not be longer than size ({self.size})"
            raise ValueError(msg)
        return self


class _Columns:
    """How each aggregation reads a batch and what type it outputs (fixed by the first
    batch that has the field)."""

    def __init__(self, node_id: str, aggregations: Mapping[str, Aggregation]) -> None:
        self.node_id = node_id
        self.aggregations = dict(aggregations)
        self.types: dict[str, pa.DataType] = {}

    def rules(self) -> dict[str, Rule]:
        rules: dict[str, Rule] = {_AS_OF: Rule.MAX}
        for name, agg in self.aggregations.items():
            if agg.fn in {"first", "last"}:
                rules[f"{name}.v"] = Rule.FIRST if agg.fn == "first" else Rule.LAST
                continue
            rules[f"{name}.n"] = Rule.SUM
            if agg.fn in {"sum", "mean"}:
                rules[f"{name}.v"] = Rule.SUM
            elif agg.fn in {"min", "max"}:
                rules[f"{name}.v"] = Rule.MIN if agg.fn == "min" else Rule.MAX
        return rules

    def _field(self, batch: pa.Table, name: str) -> pa.ChunkedArray:
        if name not in batch.column_names:
            raise RecordError("no such field in the input", source=self._where, field=name)
        return batch.column(name)

    @property
    def _where(self) -> str:
        return f"node {self.node_id!r}"

    def _type(self, name: str, agg: Aggregation, column: pa.ChunkedArray) -> pa.DataType:
        if name not in self.types:
            if agg.fn in _NUMERIC and not (
                pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
            ):
                raise RecordError(
                    f"{agg.fn} needs a numeric field, not {column.type}",
                    source=self._where,
                    field=agg.field,
                )
            if agg.fn in {"first", "last"}:
                self.types[name] = column.type
            elif agg.fn == "mean" or pa.types.is_floating(column.type):
                self.types[name] = pa.float64()
            else:
                self.types[name] = pa.int64()
        return self.types[name]

    def values(self, batch: pa.Table) -> dict[str, Values | pa.ChunkedArray]:
        out: dict[str, Values | pa.ChunkedArray] = {_AS_OF: as_of_values(batch)}
        for name, agg in self.aggregations.items():
            if agg.field is None:
                out[f"{name}.n"] = _ONE
                continue
            column = self._field(batch, agg.field)
            if agg.fn == "count":
                valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
                out[f"{name}.n"] = np.asarray(valid, dtype=np.int64)
                continue
            column = _cast(column, self._type(name, agg, column), self._where, agg.field)
            if agg.fn in {"first", "last"}:
                if pa.types.is_timestamp(column.type):  # as integers: exact, no pandas needed
                    column = column.cast(pa.int64())
                out[f"{name}.v"] = column
                continue
            valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
            out[f"{name}.n"] = np.asarray(valid, dtype=np.int64)
            out[f"{name}.v"] = _numbers(column, agg.fn)
        return out

    def arrays(self, windowed: Windowed) -> dict[str, pa.Array]:
        out: dict[str, pa.Array] = {}
        columns = windowed.columns
        for name, agg in self.aggregations.items():
            if agg.fn in {"first", "last"}:
                out[name] = pa.array(columns[f"{name}.v"].tolist(), self.types.get(name))
                continue
            n = columns[f"{name}.n"]
            if agg.fn == "count":
                out[name] = pa.array(n, pa.int64())
            elif agg.fn == "mean":
                total = columns[f"{name}.v"]
                mean = np.divide(total, n, out=np.zeros(len(n)), where=n > 0)
                out[name] = pa.array(mean, pa.float64(), mask=n == 0)
            else:
                out[name] = pa.array(columns[f"{name}.v"], self.types[name], mask=n == 0)
        return out


def _cast(column: pa.ChunkedArray, kind: pa.DataType, where: str, field: str) -> pa.ChunkedArray:
    if column.type == kind:
        return column
    try:
        return column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise RecordError(f"cannot read as {kind}: {error}", source=where, field=field) from None


def _numbers(column: pa.ChunkedArray, fn: str) -> Values:
    """A column (int64 or float64) as numpy, nulls replaced by the fold's identity."""
    kind = column.type
    dtype = np.float64 if pa.types.is_floating(kind) else np.int64
    if fn == "min":
        fill: Any = np.inf if dtype is np.float64 else np.iinfo(np.int64).max
    elif fn == "max":
        fill = -np.inf if dtype is np.float64 else np.iinfo(np.int64).min
    else:
        fill = 0
    filled = pc.fill_null(column, pa.scalar(fill, kind))
    return np.asarray(filled.to_numpy(), dtype=dtype)


WP = TypeVar("WP", bound=TumblingWindowParams)


class _KeyedWindow(EventTimeOperator[WP]):
    """What tumbling and sliding windows share; they differ in their slide."""

    def __init__(self, node_id: str, params: WP) -> None:
        self._columns = _Columns(node_id, params.aggregations)
        super().__init__(node_id, params)
        self._key_type: pa.DataType | None = None
        self._where = f"node {node_id!r}"

    def _slide(self) -> Timeframe:
        raise NotImplementedError

    def _spec(self) -> WindowSpec:
        return WindowSpec(
            size=self.params.size.seconds * 1_000_000_000,
            slide=self._slide().seconds * 1_000_000_000,
            rules=self._columns.rules(),
        )

    def _extract(self, batch: pa.Table) -> Extracted:
        for name in (self.params.key, self.params.time_field):
            if name not in batch.column_names:
                raise RecordError("no such field in the input", source=self._where, field=name)
        keys = batch.column(self.params.key)
        if pa.types.is_dictionary(keys.type):
            keys = keys.cast(keys.type.value_type)
        if self._key_type is None:
            self._key_type = keys.type
        keys = _cast(keys, self._key_type, self._where, self.params.key)
        return Extracted(keys=keys, ts=self._times(batch), values=self._columns.values(batch))

    def _times(self, batch: pa.Table) -> Values:
        name = self.params.time_field
        column = batch.column(name)
        if not pa.types.is_timestamp(column.type) or column.type.tz is None:
            raise RecordError(
                f"the event time must be a timestamp with a timezone, not {column.type}",
                source=self._where,
                field=name,
            )
        if column.null_count:
            raise RecordError("event times are missing", source=self._where, field=name)
        return int64_times(column.cast(records.TIMESTAMP))

    def _table(self, windowed: Windowed) -> pa.Table:
        keys = self.windows.keys.values(windowed.ids).tolist()
        columns: dict[str, pa.Array] = {
            self.params.key: pa.array(keys, self._key_type),
            "start": pa.array(windowed.starts, pa.int64()).cast(records.TIMESTAMP),
            "end": pa.array(windowed.ends, pa.int64()).cast(records.TIMESTAMP),
            "as_of": as_of_array(windowed.columns[_AS_OF]),
        }
        columns.update(self._columns.arrays(windowed))
        return pa.table(columns)


class TumblingWindow(_KeyedWindow[TumblingWindowParams]):
    """Per-key aggregates over fixed, non-overlapping event-time windows of ``size``."""

    Params = TumblingWindowParams
    description: ClassVar[str] = "Per-key aggregates over tumbling event-time windows."

    def _slide(self) -> Timeframe:
        return self.params.size


class SlidingWindow(_KeyedWindow[SlidingWindowParams]):
    """Per-key aggregates over overlapping event-time windows of ``size`` every ``slide``."""

    Params = SlidingWindowParams
    description: ClassVar[str] = "Per-key aggregates over sliding event-time windows."

    def _slide(self) -> Timeframe:
        return self.params.slide

"""``deduplicate``: drop records whose key was seen recently, in event time.

A row's key is the values of ``keys``. By default (no ``keys``) a row is a duplicate only
when it is the same record: its key in the platform's contract
(:data:`market_data_core.columns.KEYS`): trades by ``symbol, ts, exchange, trade_id,
ordinal``, quotes by ``symbol, ts, exchange, sequence, ordinal`` (the venue's id, else the
ordinal a provider gave identical ticks: distinct ticks are never dropped), bars by
``source, symbol, timeframe, start`` and signals by ``source, symbol, name, ts``, with
their version (``as_of, revision``: a revised bar is no duplicate of the one it revises).
A tick with neither a venue id nor an ordinal, and a table of no known kind, is keyed by
every field of the row. (``symbol`` and ``ts`` alone would drop distinct trades that share
a timestamp: 630 of the 2,001 trades of a real Binance file share their millisecond with
another.) The first row with a key passes and its key is remembered with the row's event
time ``t`` (field ``time_field``); later rows with that key are dropped, counted as
``deduplicated``, until the clock passes ``t + ttl``. The clock is the greatest event time
of the rows that passed (and of the row being looked at), so it never depends on wall time
or on how the stream was cut into batches, and deduplicating twice changes nothing.

A row more than ``ttl`` older than the clock is never dropped (its key has already expired)
and is counted as ``past_ttl``: a duplicate that comes later than ``ttl`` (event time)
after its first passes. Choose a ``ttl`` longer than the disorder of the stream (the time
a venue's correction or a replayed overlap can lag); memory grows with it (about two ttls
of keys). Nulls in key fields compare equal
(as in SQL's ``DISTINCT``); rows whose event time is null pass and are not remembered.

Memory is bounded by the ttl: keys are swept once the clock has moved ``ttl`` past the last
sweep, so a key is forgotten about ``2 * ttl`` after its event time (checked after each batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from market_data_pipeline import records
from market_data_pipeline.components import Emit, Operator, Params

__all__ = ["Deduplicate", "DeduplicateParams", "default_key"]

_NANOS: Final = 1_000_000_000
_VENUE_ID: Final = {records.Kind.TRADES: "trade_id", records.Kind.QUOTES: "sequence"}


class DeduplicateParams(Params):
    keys: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Fields whose values together identify a record (default: the record's key in"
            " the contract, e.g. symbol, ts, exchange, trade_id, ordinal for trades; bars and"
            " signals with their version; else the whole row)."
        ),
    )
    ttl: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Seconds of event time a key is remembered: a duplicate later than this passes"
            " (counted as past_ttl). Above the stream's disorder; memory grows with it."
        ),
    )
    time_field: str = "ts"
    """The event time: a timestamp, or a number of seconds."""

    @field_validator("keys")
    @classmethod
    def _distinct(cls, keys: list[str] | None) -> list[str] | None:
        if keys is not None and len(set(keys)) != len(keys):
            msg = f"keys must be distinct: {keys}"
            raise ValueError(msg)
        return keys


class Deduplicate(Operator[DeduplicateParams]):
    """Drops rows whose key passed less than ``ttl`` seconds (event time) before."""

    Params = DeduplicateParams
    description: ClassVar[str] = "Drop records seen within a ttl of event time (first wins)."

    def __init__(self, node_id: str, params: DeduplicateParams) -> None:
        super().__init__(node_id, params)
        self._ttl = round(params.ttl * _NANOS)
        self._seen: dict[Any, int] = {}
        self._clock: int | None = None
        self._swept: int | None = None

    @property
    def remembered(self) -> int:
        """Keys held in memory now (expired ones included until the next sweep)."""
        return len(self._seen)

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        if batch.num_rows == 0:
            return
        times = self._nanos(batch)
        keep, unchecked = self._admit(self._keys(batch), times)
        if unchecked:
            self.context.count("past_ttl", unchecked)
        if dropped := batch.num_rows - len(keep):
            self.context.count("deduplicated", dropped)
            batch = batch.take(pa.array(keep, type=pa.int64()))
        self._sweep()
        await emit(batch)

    def _admit(self, keys: Iterable[Any], times: list[int | None]) -> tuple[list[int], int]:
        """Indices of the rows that pass, and how many of them came past the ttl (their
        key may have been forgotten); remembers their keys.

        The one loop in Python per row: a hash table that outlives the batch has no
        vectorized form in Arrow or numpy (DESIGN §6). Everything around it is vectorized.
        """
        seen, ttl = self._seen, self._ttl
        clock = self._clock
        keep: list[int] = []
        unchecked = 0
        for index, (key, t) in enumerate(zip(keys, times, strict=True)):
            if t is None:
                keep.append(index)
                continue
            now = t if clock is None or t > clock else clock
            first = seen.get(key)
            if first is None or now > first + ttl:
                if now > t + ttl:
                    unchecked += 1
                seen[key] = t
                clock = now
                keep.append(index)
        self._clock = clock
        return keep, unchecked

    def _sweep(self) -> None:
        """Forget expired keys, at most once per ttl of event time."""
        clock = self._clock
        if clock is None:
            return
        if self._swept is None:
            self._swept = clock
        elif clock > self._swept + self._ttl:
            horizon = clock - self._ttl
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
            self._swept = clock

    def _keys(self, batch: pa.Table) -> Iterable[Any]:
        """One hashable key per row: a value for one field, a tuple for several."""
        if self.params.keys is None:
            return _record_keys(batch)
        columns = [_plain(self._column(batch, name)).to_pylist() for name in self.params.keys]
        return columns[0] if len(columns) == 1 else zip(*columns, strict=True)

    def _nanos(self, batch: pa.Table) -> list[int | None]:
        """Event times as integer nanoseconds (``None`` where null)."""
        column = self._column(batch, self.params.time_field)
        if pa.types.is_timestamp(column.type):
            values = column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            seconds = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            nanos = np.round(seconds * _NANOS)
            values = pa.array(nanos, type=pa.float64(), from_pandas=True).cast(pa.int64())
        else:
            msg = (
                f"deduplicate: time_field {self.params.time_field!r} is {column.type};"
                " it must be a timestamp or a number of seconds"
            )
            raise ValueError(msg)
        result: list[int | None] = values.to_pylist()
        return result

    @staticmethod
    def _column(batch: pa.Table, name: str) -> pa.ChunkedArray:
        if name not in batch.column_names:
            msg = f"deduplicate: the batch has no field {name!r} ({', '.join(batch.column_names)})"
            raise ValueError(msg)
        return batch.column(name)


def default_key(kind: records.Kind | None) -> tuple[str, ...] | None:
    """The fields of the default key of a table of ``kind`` (``None``: the whole row)."""
    if kind is None:
        return None
    if kind in _VENUE_ID:
        return records.KEYS[kind]
    return (*records.KEYS[kind], *records.VERSION)


def _record_keys(batch: pa.Table) -> list[Any]:
    """The default key of each row (:func:`default_key`): only the same record twice is a
    duplicate. A tick with neither a venue id nor an ordinal is keyed by the whole row
    (lists as tuples), since nothing else tells it from another at the same instant."""
    kind = records.kind_of(batch)
    fields = default_key(kind)
    if fields is None:
        return [("row", *row) for row in _whole_rows(batch)]
    rows = batch.num_rows
    columns = [
        _plain(batch.column(name)).to_pylist() if name in batch.column_names else [None] * rows
        for name in fields
    ]
    keys: list[Any] = [("key", *key) for key in zip(*columns, strict=True)]
    if kind in _VENUE_ID:
        unidentified = pc.and_(_nulls(batch, _VENUE_ID[kind]), _nulls(batch, "ordinal"))
        positions = np.flatnonzero(np.asarray(unidentified.to_numpy(zero_copy_only=False)))
        if len(positions):
            whole = batch.take(pa.array(positions, pa.int64()))
            for position, row in zip(positions.tolist(), _whole_rows(whole), strict=True):
                keys[position] = ("row", *row)
    return keys


def _nulls(batch: pa.Table, name: str) -> pa.Array:
    if name not in batch.column_names:
        return pa.array(np.ones(batch.num_rows, dtype=np.bool_))
    return pc.is_null(batch.column(name)).combine_chunks()


def _whole_rows(batch: pa.Table) -> Iterator[tuple[Any, ...]]:
    return zip(*(_hashable(batch.column(name)) for name in batch.column_names), strict=True)


def _hashable(column: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return [None if v is None else tuple(v) for v in column.to_pylist()]
    values: list[Any] = _plain(column).to_pylist()
    return values


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values that convert to Python fast and hash by value (timestamps as integers)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_nested(column.type):
        msg = f"deduplicate: a key field must hold scalar values, not {column.type}"
        raise ValueError(msg)
    if pa.types.is_timestamp(column.type) or pa.types.is_duration(column.type):
        return column.cast(pa.int64())
    return column

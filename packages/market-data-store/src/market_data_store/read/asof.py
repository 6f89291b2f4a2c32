"""As-of joins: each row of one series with the latest row of another at its time.

``asof_join(trades, quotes)`` gives every trade the quote that prevailed when it printed:
the last quote of the same symbol at or before the trade's time (``pandas.merge_asof``'s
``direction="backward"``, exact matches allowed; among quotes of one time, the last in the
read's order). It takes and gives Arrow tables in left's row order, and needs neither side
sorted by time overall: reads come ordered by symbol, then time.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from market_data_store.exceptions import ReadError

__all__ = ["asof_join"]


def asof_join(
    left: pa.Table,
    right: pa.Table,
    *,
    on: str = "ts",
    right_on: str | None = None,
    by: str | None = "symbol",
    tolerance: timedelta | None = None,
    suffix: str = "_right",
) -> pa.Table:
    """``left`` with, on each row, the columns of the last ``right`` row whose ``right_on``
    (default ``on``) is at or before the row's ``on`` and, with ``by``, of the same value
    of ``by``; nulls where there is none (or it is older than ``tolerance``). ``right``'s
    ``on`` and ``by`` are left out; its other columns named as one of left's take
    ``suffix``. Equal to ``pandas.merge_asof(left, right, on=on, by=by,
    suffixes=("", suffix), tolerance=tolerance)`` on tables sorted by ``on``."""
    right_on = right_on or on
    for table, name, column in ((left, "left", on), (right, "right", right_on)):
        if column not in table.column_names:
            msg = f"as-of join: the {name} table has no column {column!r}"
            raise ReadError(msg)
        if by is not None and by not in table.column_names:
            msg = f"as-of join: the {name} table has no column {by!r} to join by"
            raise ReadError(msg)
    left_times = _times(left.column(on), "left", on)
    right_times = _times(right.column(right_on), "right", right_on)
    match = np.full(len(left_times), -1, dtype=np.int64)
    groups = _groups(left, right, by)
    for left_rows, right_rows in groups:
        if len(right_rows) == 0 or len(left_rows) == 0:
            continue
        times = right_times[right_rows]
        order = np.argsort(times, kind="stable")
        sorted_times = times[order]
        found = np.searchsorted(sorted_times, left_times[left_rows], side="right") - 1
        hit = found >= 0
        chosen = np.where(hit, right_rows[order[np.maximum(found, 0)]], -1)
        if tolerance is not None:
            limit = tolerance // timedelta(microseconds=1) * 1000
            gap = left_times[left_rows] - right_times[np.maximum(chosen, 0)]
            chosen = np.where(hit & (gap <= limit), chosen, -1)
        match[left_rows] = chosen
    indices = pa.array(match, pa.int64(), mask=match < 0)
    joined = left
    for name in right.column_names:
        if name in (right_on, by) or (name == on and right_on == on):
            continue
        column = right.column(name).take(indices)
        joined = joined.append_column(name + suffix if name in left.column_names else name, column)
    return joined


def _times(column: pa.ChunkedArray, side: str, name: str) -> np.ndarray:
    if not (pa.types.is_timestamp(column.type) or pa.types.is_integer(column.type)):
        msg = f"as-of join: the {side} column {name!r} is {column.type}, not a time"
        raise ReadError(msg)
    if column.null_count:
        msg = f"as-of join: the {side} column {name!r} has nulls"
        raise ReadError(msg)
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("ns", column.type.tz))
    return np.asarray(pc.cast(column, pa.int64()).to_numpy(), dtype=np.int64)


def _groups(left: pa.Table, right: pa.Table, by: str | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row numbers of left and right per value of ``by`` (one group without ``by``)."""
    if by is None:
        return [(np.arange(left.num_rows), np.arange(right.num_rows))]
    chunks = [*left.column(by).chunks, *right.column(by).chunks]
    keys = pa.concat_arrays(
        [chunk.cast(pa.string()) for chunk in chunks] or [pa.array([], pa.string())]
    )
    indices = pc.fill_null(pc.cast(pc.dictionary_encode(keys).indices, pa.int64()), -1)
    codes = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    left_codes, right_codes = codes[: left.num_rows], codes[left.num_rows :]
    left_order = np.argsort(left_codes, kind="stable")
    right_order = np.argsort(right_codes, kind="stable")
    left_sorted, right_sorted = left_codes[left_order], right_codes[right_order]
    groups = []
    for code in np.unique(left_codes):
        if code < 0:  # a null key matches nothing, as in pandas
            continue
        left_first, left_last = np.searchsorted(left_sorted, [code, code + 1])
        first, last = np.searchsorted(right_sorted, [code, code + 1])
        groups.append((left_order[left_first:left_last], right_order[first:last]))
    return groups

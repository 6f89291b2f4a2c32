"""How records travel inside the pipeline: Arrow tables of the platform's columnar contract.

Channels carry batches, not single items (DESIGN §6): a batch is a ``pyarrow.Table`` of one
of core's schemas (``TRADES``, ``QUOTES``, ``BARS``, ``SIGNALS``, from
:mod:`market_data_core.columns`; operators may also pass tables of any other schema
through). There is one definition of them, in core: the store reads and writes the same.
Timestamps are ``timestamp[ns, UTC]``: every tick keeps its nanoseconds.

Records are validated once, at the edges, per column and per batch (:func:`check`: core's
:func:`~market_data_core.columns.conform`, with errors that name the file, line and
field), and convert losslessly to and from core models (:func:`to_models`,
:func:`from_models`). :func:`kind_of` tells the kind from the columns: every required
column of exactly one kind present (extra columns, e.g. a ``mid`` added by a ``map``, are
allowed; missing nullable ones read as null).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import pyarrow as pa

from market_data_core.columns import (
    BARS,
    KEYS,
    QUOTES,
    SCHEMAS,
    SIGNALS,
    TIME,
    TIMESTAMP,
    TRADES,
    VERSION,
    ColumnError,
    Kind,
    conform,
    empty,
    from_models,
    kind_of,
    schema_of,
    to_models,
)
from market_data_core.timestamps import from_ns
from market_data_pipeline.exceptions import RecordError

__all__ = [
    "BARS",
    "KEYS",
    "QUOTES",
    "SCHEMAS",
    "SIGNALS",
    "TIME",
    "TIMESTAMP",
    "TRADES",
    "VERSION",
    "Kind",
    "check",
    "concat",
    "datetimes",
    "empty",
    "first_bad",
    "from_models",
    "kind_of",
    "schema_of",
    "to_models",
    "utc",
]

_TIMEFRAME: Final = "is not aligned to its timeframe"


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """One table from several of the same schema (no copy of the column data)."""
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables)


def check(table: pa.Table, kind: Kind | str, *, source: str, first_line: int = 1) -> pa.Table:
    """Validate a batch at the edge, column by column; return it cast to the kind's schema.

    The rules are core's (:func:`market_data_core.columns.conform`: the core models' rules,
    per column); this names where a bad row came from. Raises :class:`RecordError` naming
    ``source``, the line of the first bad row (``first_line`` is the line of the table's
    first row) and the field.
    """
    try:
        return conform(table, kind)
    except ColumnError as error:
        line = first_line + error.row if error.row is not None else None
        raise RecordError(
            _message(error, table, kind), source=source, line=line, field=error.column
        ) from None


def _message(error: ColumnError, table: pa.Table, kind: Kind | str) -> str:
    """Core's reason, said for a user who looks at the input (the timeframe of a
    misaligned bar is named)."""
    reason = error.reason
    if reason.startswith(_TIMEFRAME) and error.row is not None and Kind(kind) is Kind.BARS:
        timeframe = table.column("timeframe")[error.row].as_py()
        return reason.replace(_TIMEFRAME, f"is not aligned to timeframe {timeframe}", 1)
    return reason


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


def utc(table: pa.Table, column: str = "ts") -> list[Any]:
    """The column's values as aware UTC datetimes, to the nanosecond (for tests and
    messages)."""
    return [None if v is None else v.astimezone(UTC) for v in datetimes(table.column(column))]


def datetimes(column: pa.ChunkedArray | pa.Array) -> list[datetime | None]:
    """A timestamp column's values as datetimes that keep their nanoseconds (core's
    ``NanoDatetime`` where they are not whole microseconds; ``None`` for nulls), whether
    or not pandas is installed."""
    nanos = column.cast(TIMESTAMP).cast(pa.int64()).to_pylist()
    return [None if n is None else from_ns(n) for n in nanos]

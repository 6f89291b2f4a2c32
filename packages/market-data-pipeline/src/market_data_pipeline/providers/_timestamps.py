"""Event-time helpers of the providers: durations, timestamp columns and wall-clock pacing.

- :func:`parse_duration`: ``"6h30m"``, ``"90s"``, ``"250ms"`` or a number of seconds.
- :func:`to_utc_nanos`: any timestamp column of a file (aware or naive timestamps, ISO
  strings with up to nine fractional digits, epoch numbers in s/ms/us/ns) as
  ``timestamp[ns, UTC]``, exactly, with errors that name the file, line and field.
- :class:`Pacer`: sleeps so that positions (event seconds, records) advance at a given rate
  in wall-clock time; the clock and the sleep are injectable, so tests assert the planned
  sleeps instead of measuring time.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from market_data_core import MAX_TIMESTAMP, MIN_TIMESTAMP
from market_data_core.timestamps import to_ns
from market_data_pipeline.exceptions import RecordError
from market_data_pipeline.records import TIMESTAMP, first_bad

__all__ = [
    "Clock",
    "Pacer",
    "Sleep",
    "TimeUnit",
    "first_bad",
    "parse_duration",
    "stoppable_sleep",
    "to_utc_nanos",
]

TimeUnit = Literal["auto", "s", "ms", "us", "ns"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|us|d|h|m|s)")
_UNIT_SECONDS: Final = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
_NANOS_PER: Final = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_DIGITS: Final = {"s": 9, "ms": 6, "us": 3, "ns": 0}
"""Fractional digits of each unit that nanoseconds hold."""
_NAMES: Final = {1_000_000_000: "s", 1_000_000: "ms", 1_000: "us", 1: "ns"}
_NANO_DIGITS: Final = 9
_NUMERIC: Final = r"^\s*[-+]?\d+(\.\d*)?([eE][-+]?\d+)?\s*$"
_DECIMAL: Final = r"^(?P<sign>[-+]?)(?P<whole>\d+)(?:\.(?P<fraction>\d*))?$"
"""Decimal text without an exponent (trimmed): read exactly."""
_FRACTION: Final = re.compile(r"\d[.,](\d+)")
_I64: Final = np.iinfo(np.int64).max
_MIN_NS: Final = to_ns(MIN_TIMESTAMP)
_MAX_NS: Final = to_ns(MAX_TIMESTAMP)
# as Arrow scalars: a Python number given to a compute function is converted at every call,
# which costs ~0.1 ms where dateutil is not installed (pyarrow tries to import it each time)
_MIN_SCALAR: Final = pa.scalar(_MIN_NS, pa.int64())
_MAX_SCALAR: Final = pa.scalar(_MAX_NS, pa.int64())
_RANGE: Final = f"[{MIN_TIMESTAMP.year}-01-01, {MAX_TIMESTAMP.year}-01-01)"
_OUTSIDE: Final = f"is outside the times nanoseconds hold {_RANGE}"
_OFFSET: Final = r"(Z|z|[+-]\d\d(:?\d\d)?)\s*$"
"""A timestamp's UTC offset at its end (``Z``, ``+00:00``, ``-0500``)."""


def parse_duration(value: object) -> timedelta:
    """A duration from ``"6h30m"``, ``"1d"``, ``"90s"``, ``"250ms"``, seconds or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))
        try:
            return timedelta(seconds=float(text))
        except ValueError:
            pass
    msg = f"not a duration: {value!r} (write e.g. '6h30m', '90s', '250ms' or a number of seconds)"
    raise ValueError(msg)


# -- timestamp columns -------------------------------------------------------------------


class _Where:
    """The file, field and line numbers of a column, to build errors."""

    def __init__(self, source: str, field: str, lines: npt.NDArray[np.int64]) -> None:
        self.source, self.field, self.lines = source, field, lines

    def error(self, message: str, index: int | None = None) -> RecordError:
        line = int(self.lines[index]) if index is not None and len(self.lines) else None
        return RecordError(message, source=self.source, line=line, field=self.field)


def to_utc_nanos(
    column: pa.Array | pa.ChunkedArray,
    *,
    source: str,
    field: str,
    lines: npt.NDArray[np.int64],
    timezone: str | None,
    unit: TimeUnit = "auto",
) -> tuple[pa.Array, TimeUnit]:
    """``column`` as ``timestamp[ns, UTC]``, exactly; also returns the unit numbers were
    read in (``auto`` resolved from the magnitude, so the caller can keep it for later
    batches).

    Timestamps of any unit, ISO strings with up to nine fractional digits and integers (or
    integer text, or decimal text such as ``1704205800.123456789``) keep every digit; a
    value that would lose one (ten fractional digits, a fraction of a nanosecond) is an
    error naming the field and line, never truncated. Floating-point numbers carry no more
    than about a microsecond for present-day epochs (a ``float64`` has 15-16 significant
    digits): they are rounded to the microsecond.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    where = _Where(source, field, lines)
    kind = column.type
    if pa.types.is_null(kind):  # no value at all (e.g. an NDJSON key that is always null)
        return pa.nulls(len(column), TIMESTAMP), unit
    if pa.types.is_timestamp(kind):
        return _from_timestamps(column, timezone, where), unit
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _from_numbers(column, unit, where)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _from_strings(column, timezone, unit, where)
    if pa.types.is_date(kind):
        return _from_timestamps(column.cast(pa.timestamp("s")), timezone, where), unit
    raise where.error(f"cannot read a timestamp from a column of type {kind}")


def _in_range(column: pa.Array, where: _Where) -> pa.Array:
    """A timestamp column (any unit) as nanoseconds, UTC; outside the range nanoseconds
    hold (and the contracts accept) is an error naming the first such row."""
    try:
        nanos = pc.cast(column, pa.timestamp("ns", tz=column.type.tz))
    except pa.ArrowInvalid:
        nanos = None
    if nanos is not None:
        numbers = nanos.cast(pa.int64())
        bad = pc.or_(pc.less(numbers, _MIN_SCALAR), pc.greater_equal(numbers, _MAX_SCALAR))
        if not pc.any(bad).as_py():
            return pc.cast(nanos, TIMESTAMP)
        index = int(pc.index(pc.fill_null(bad, False), True).as_py())
    else:
        index = first_bad(column, lambda a: pc.cast(a, pa.timestamp("ns", tz=a.type.tz)))
    raise where.error(f"{_OUTSIDE} ({column[index]})", index)


def _from_timestamps(column: pa.Array, timezone: str | None, where: _Where) -> pa.Array:
    if column.type.tz is not None:
        return _in_range(column, where)
    if timezone is None:
        raise _naive(column, where)
    column = _in_range(pc.cast(column, pa.timestamp("ns")), where).cast(pa.timestamp("ns"))
    try:
        aware = pc.assume_timezone(column, timezone=timezone)
    except (pa.ArrowInvalid, ValueError) as error:
        bad = first_bad(column, lambda a: pc.assume_timezone(a, timezone=timezone))
        raise where.error(f"cannot place in timezone {timezone!r}: {error}", bad) from None
    return _in_range(aware, where)


def _naive(column: pa.Array, where: _Where) -> RecordError:
    first = column.drop_null()
    example = f" ({first[0]})" if len(first) else ""
    return where.error(
        f"timestamps without a timezone{example}: set `timezone: UTC` in the provider's "
        "params if they are in UTC (or the IANA name of their zone)",
        0,
    )


def _from_strings(
    column: pa.Array, timezone: str | None, unit: TimeUnit, where: _Where
) -> tuple[pa.Array, TimeUnit]:
    text = pc.utf8_trim_whitespace(column)
    present = text.drop_null()
    if len(present) and pc.all(pc.match_substring_regex(present, _NUMERIC)).as_py():
        if pc.all(pc.match_substring_regex(present, _DECIMAL)).as_py():
            return _from_decimals(text, unit, where)
        return _from_numbers(pc.cast(text, pa.float64()), unit, where)
    aware = _try(text, _parse_aware)
    if aware is not None:
        return _in_range(aware, where), unit
    naive = _try(text, _parse_naive)
    if naive is not None:
        return _from_timestamps(naive, timezone, where), unit
    mixed = _mixed(text, timezone, where)
    if mixed is not None:
        return mixed, unit
    sample = present[0] if len(present) else None
    parse = _parse_aware if sample is not None and _try(present.slice(0, 1), _parse_aware) else None
    parse = parse or _parse_naive
    bad = first_bad(text, parse)
    value = text[bad].as_py()
    digits = _FRACTION.search(value or "")
    if digits is not None and len(digits.group(1)) > _NANO_DIGITS:
        raise where.error(
            f"has {len(digits.group(1))} fractional digits ({value!r}): at most 9 (nanoseconds)",
            bad,
        )
    if _try(text.slice(bad, 1), _parse_coarse) is not None:
        raise where.error(f"{_OUTSIDE} ({value!r})", bad)
    raise where.error(f"is not a timestamp ({value!r})", bad)


def _mixed(text: pa.Array, timezone: str | None, where: _Where) -> pa.Array | None:
    """A column that mixes timestamps with a UTC offset and without one: with
    ``timezone`` the ones without are read in it; without, an error that says so. ``None``
    when the column is not such a mix (some value is no timestamp at all)."""
    marked = pc.fill_null(pc.match_substring_regex(text, _OFFSET), False).to_numpy(
        zero_copy_only=False
    )
    if marked.all() or not marked.any():
        return None
    with_offset = _try(text.filter(pa.array(marked)), _parse_aware)
    without = _try(text.filter(pa.array(~marked)), _parse_naive)
    if with_offset is None or without is None:
        return None
    if timezone is None:
        bad = int(np.flatnonzero(~marked & pc.is_valid(text).to_numpy(zero_copy_only=False))[0])
        first = int(np.flatnonzero(marked)[0])
        raise where.error(
            f"has no UTC offset ({text[bad].as_py()!r}) while other rows have one"
            f" ({text[first].as_py()!r}, line {int(where.lines[first])}): set `timezone:`"
            " (e.g. UTC) to read the ones without an offset in that zone",
            bad,
        )
    placed = _from_timestamps(without, timezone, where)
    nanos = np.empty(len(text), dtype=np.int64)
    valid = np.empty(len(text), dtype=bool)
    for rows, values in ((marked, with_offset), (~marked, placed)):
        numbers = values.cast(pa.int64())
        nanos[rows] = pc.fill_null(numbers, 0).to_numpy(zero_copy_only=False)
        valid[rows] = pc.is_valid(numbers).to_numpy(zero_copy_only=False)
    return _in_range(pa.array(nanos, type=pa.int64(), mask=~valid).cast(TIMESTAMP), where)


def _try(array: pa.Array, parse: Callable[[pa.Array], pa.Array]) -> pa.Array | None:
    try:
        return parse(array)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _parse_aware(text: pa.Array) -> pa.Array:
    return text.cast(TIMESTAMP)


def _parse_naive(text: pa.Array) -> pa.Array:
    return text.cast(pa.timestamp("ns"))


def _parse_coarse(text: pa.Array) -> pa.Array:
    """Timestamps to the second, of any year (to tell one outside the range from text
    that is no timestamp)."""
    try:
        return text.cast(pa.timestamp("s", tz="UTC"))
    except pa.ArrowInvalid:
        return text.cast(pa.timestamp("s"))


def _from_decimals(text: pa.Array, unit: TimeUnit, where: _Where) -> tuple[pa.Array, TimeUnit]:
    """Decimal text (``1704205800``, ``1704205800.123456789``) as nanoseconds, exactly:
    the whole and fractional digits are read as integers, never through a float."""
    parts = pc.extract_regex(text, _DECIMAL)
    negative = pc.equal(pc.struct_field(parts, "sign"), "-")
    whole_text = pc.struct_field(parts, "whole")
    fraction = pc.struct_field(parts, "fraction")
    mask = np.asarray(pc.is_null(text).to_numpy(zero_copy_only=False))
    try:
        whole = np.asarray(
            pc.fill_null(pc.cast(whole_text, pa.int64()), 0).to_numpy(zero_copy_only=False),
            dtype=np.int64,
        )
    except pa.ArrowInvalid:
        bad = first_bad(whole_text, lambda a: pc.cast(a, pa.int64()))
        raise where.error(f"{_OUTSIDE} ({text[bad].as_py()!r})", bad) from None
    if unit == "auto":
        valid = np.abs(whole[~mask])
        unit = _guess_unit(float(valid.max()) if len(valid) else 0.0)
    per, digits = _NANOS_PER[unit], _DIGITS[unit]
    padded = pc.utf8_rpad(pc.fill_null(fraction, ""), width=_NANO_DIGITS, padding="0")
    kept, rest = (
        pc.utf8_slice_codeunits(padded, 0, digits),
        pc.utf8_slice_codeunits(padded, digits),
    )
    lost = pc.invert(pc.match_substring_regex(rest, r"^0*$"))
    if pc.any(pc.and_(lost, pc.invert(pa.array(mask)))).as_py():
        bad = int(pc.index(lost, True).as_py())
        raise where.error(
            f"has more fractional digits than nanoseconds hold ({text[bad].as_py()!r}, in {unit})",
            bad,
        )
    part = (
        np.asarray(pc.cast(kept, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        if digits
        else np.zeros(len(text), dtype=np.int64)
    )
    sign = np.where(np.asarray(pc.fill_null(negative, False).to_numpy(zero_copy_only=False)), -1, 1)
    return _scaled(whole, part, sign, per, mask, where), unit


def _scaled(
    whole: npt.NDArray[np.int64],
    part: npt.NDArray[np.int64],
    sign: npt.NDArray[np.int64],
    per: int,
    mask: npt.NDArray[np.bool_],
    where: _Where,
) -> pa.Array:
    """``sign * (whole * per + part)`` nanoseconds, checked against the range."""
    limit = _MAX_NS // per
    out_of_range = ~mask & (np.abs(whole) > limit)
    if out_of_range.any():
        bad = int(np.flatnonzero(out_of_range)[0])
        raise where.error(f"{_OUTSIDE} ({int(sign[bad] * whole[bad])} {_NAMES[per]})", bad)
    nanos = np.where(mask, 0, sign * (whole * per + part))
    return _in_range(pa.array(nanos, type=pa.int64(), mask=mask).cast(TIMESTAMP), where)


def _from_numbers(column: pa.Array, unit: TimeUnit, where: _Where) -> tuple[pa.Array, TimeUnit]:
    values = column.to_numpy(zero_copy_only=False)
    mask = np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False))
    valid = values[~mask].astype(np.float64)
    if len(valid) and not np.all(np.isfinite(valid)):
        bad = int(np.flatnonzero(~mask)[np.flatnonzero(~np.isfinite(valid))[0]])
        raise where.error("is not a finite epoch timestamp", bad)
    if unit == "auto":
        unit = _guess_unit(float(np.max(np.abs(valid))) if len(valid) else 0.0)
    per = _NANOS_PER[unit]
    filled = np.where(mask, 0, values)
    if np.issubdtype(filled.dtype, np.integer):
        if np.issubdtype(filled.dtype, np.unsignedinteger) and len(filled) and filled.max() > _I64:
            bad = int(np.argmax(filled))
            raise where.error(f"{_OUTSIDE} ({int(filled[bad])} {_NAMES[per]})", bad)
        whole = filled.astype(np.int64)
        sign = np.where(whole < 0, -1, 1)
        return _scaled(np.abs(whole), np.zeros_like(whole), sign, per, mask, where), unit
    # a float64 holds about a microsecond of a present-day epoch: round to it
    floats = filled.astype(np.float64)
    micros = np.round(floats * (per / 1000))
    limit = _MAX_NS // 1000
    out_of_range = ~mask & (np.abs(micros) > limit)
    if out_of_range.any():
        bad = int(np.flatnonzero(out_of_range)[0])
        raise where.error(f"{_OUTSIDE} ({floats[bad]!r} {_NAMES[per]})", bad)
    whole = micros.astype(np.int64)
    sign = np.where(whole < 0, -1, 1)
    return _scaled(np.abs(whole), np.zeros_like(whole), sign, 1000, mask, where), unit


def _guess_unit(magnitude: float) -> TimeUnit:
    """Epoch unit from the size of the numbers (dates between 1973 and 5138 in any unit)."""
    if magnitude < 1e11:
        return "s"
    if magnitude < 1e14:
        return "ms"
    if magnitude < 1e17:
        return "us"
    return "ns"


# -- pacing ------------------------------------------------------------------------------


async def stoppable_sleep(seconds: float, stopping: asyncio.Event) -> None:
    """Sleep, but wake up at once when ``stopping`` is set."""
    if seconds <= 0 or stopping.is_set():
        return
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        return


class Pacer:
    """Keeps a position (event seconds, records...) advancing at ``rate`` units per wall second.

    The first call anchors the position to the clock; later calls sleep until the position
    is due. After a pause (backpressure, a slow consumer) of more than ``max_lag`` seconds it
    re-anchors instead of bursting to catch up.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_lag: float = 1.0,
    ) -> None:
        if rate <= 0:
            msg = f"rate must be > 0, got {rate}"
            raise ValueError(msg)
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.max_lag = max_lag
        self._anchor: tuple[float, float] | None = None

    async def wait(self, position: float) -> None:
        """Return once ``position`` is due."""
        now = self.clock()
        if self._anchor is None:
            self._anchor = (now, position)
            return
        wall, start = self._anchor
        delay = wall + (position - start) / self.rate - now
        if delay > 0:
            await self.sleep(delay)
        elif -delay > self.max_lag:
            self._anchor = (now, position)

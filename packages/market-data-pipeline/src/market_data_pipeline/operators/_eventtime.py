"""Event-time windows shared by the window and resampling operators (private).

Semantics, per operator (DESIGN §6):

- The watermark is the latest event time seen minus ``max_delay``. A window
  ``[start, end)`` fires (is emitted) once the watermark reaches ``end``.
- A fired window keeps its state until the watermark reaches ``end + allowed_lateness``;
  records that arrive for it meanwhile update it and it is emitted again (a revision that
  replaces the earlier one, since stores keep the newest version of a key). Each emission
  says whether it re-emits a window that had fired on the watermark (``Windowed.late``).
- A record all of whose windows were purged is late: it goes unchanged to the ``late``
  output and is counted (``late``). Lateness is decided per row against the watermark of
  the rows before it, so how a stream is cut into batches never changes which rows are late.
- ``idle_timeout`` (wall clock, the only use of it): without input for that long, every
  open window is emitted; its state stays until the watermark purges it, so a record that
  arrives later revises it instead of replacing it with a partial window.
- ``finish`` (end of stream) emits every window not emitted yet.
- A mark (:mod:`market_data_pipeline.marks`) is held until every window that a row before
  it touched is purged (the watermark past ``end + allowed_lateness``): only then can no
  later row change a bar those rows are in. It leaves stamped with the latest event time,
  which :meth:`EventTimeOperator.restore` takes back after a restart. ``finish`` drops
  the marks it holds: the windows it emits may be partial (a worker stopping), so what
  they hold is never acknowledged, and is delivered again to whoever resumes.

Everything is columnar: a batch becomes per-(key, window) partial aggregates through one
stable sort and ``numpy`` ``reduceat``; the state is a set of arrays sorted by a composite
(key id, window index) integer, merged with ``searchsorted``. Python loops run per distinct
key of a batch, never per row.

Times are integer nanoseconds since the epoch (``timestamp[ns, UTC]``), durations too, so
"first" and "last" respect the order of events within a microsecond.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Final, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from market_data_core.columns import TIMESTAMP as _TIMESTAMP
from market_data_pipeline.components import Emit, Operator, Params
from market_data_pipeline.exceptions import RecordError
from market_data_pipeline.marks import Mark

__all__ = [
    "NO_AS_OF",
    "EventTimeOperator",
    "EventTimeParams",
    "Extracted",
    "Groups",
    "KeyIndex",
    "Rule",
    "WindowSpec",
    "Windowed",
    "Windows",
    "as_of_array",
    "as_of_values",
    "int64_times",
    "nanos",
]

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Values = npt.NDArray[Any]

_NANOS: Final = 1_000_000_000
_KEY_SHIFT: Final = 34
_WINDOW_BIAS: Final = 1 << 33
_MAX_KEYS: Final = 1 << 29
_NO_EVENT: Final = -(1 << 62)
_MAX_SECONDS: Final = 10**9
_SMALL_CODES: Final = 1 << 16


NO_AS_OF: Final = np.iinfo(np.int64).min
"""A null ``as_of`` among the nanoseconds of the others (below any of them)."""


def nanos(seconds: float) -> int:
    """Seconds as whole nanoseconds."""
    return round(seconds * _NANOS)


def int64_times(column: pa.Array | pa.ChunkedArray) -> I64:
    """A timestamp column (``timestamp[ns, UTC]``; another unit is converted exactly) as
    nanoseconds since the epoch."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type != _TIMESTAMP:
        column = column.cast(_TIMESTAMP)
    return np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def as_of_values(batch: pa.Table) -> Values:
    """Each row's ``as_of`` in nanoseconds (:data:`NO_AS_OF` where null or absent), to fold
    with :attr:`Rule.MAX`: a window's version time is the latest of its rows'."""
    if "as_of" not in batch.column_names:
        return np.full(batch.num_rows, NO_AS_OF, dtype=np.int64)
    column = batch.column("as_of")
    if not pa.types.is_timestamp(column.type):
        return np.full(batch.num_rows, NO_AS_OF, dtype=np.int64)
    numbers = pc.cast(column.cast(_TIMESTAMP), pa.int64())
    return np.asarray(pc.fill_null(numbers, NO_AS_OF).to_numpy(), dtype=np.int64)


def as_of_array(values: Values) -> pa.Array:
    """Folded ``as_of`` nanoseconds as a timestamp column (null where no row had one)."""
    return pa.array(values, pa.int64(), mask=values == NO_AS_OF).cast(_TIMESTAMP)


class Rule(Enum):
    """How partial aggregates of one state column combine."""

    SUM = "sum"
    MIN = "min"
    MAX = "max"
    ANY = "any"
    FIRST = "first"
    """The value of the earliest event (ties: the earliest arrival)."""
    LAST = "last"
    """The value of the latest event (ties: the latest arrival)."""


_REDUCE: Final = {
    Rule.SUM: np.add,
    Rule.MIN: np.minimum,
    Rule.MAX: np.maximum,
    Rule.ANY: np.logical_or,
}


class EventTimeParams(Params):
    """Event-time params shared by windows and resampling."""

    max_delay: float = Field(
        default=0.0,
        ge=0,
        le=_MAX_SECONDS,
        allow_inf_nan=False,
        description="Seconds the watermark trails the latest event time seen.",
    )
    allowed_lateness: float = Field(
        default=0.0,
        ge=0,
        le=_MAX_SECONDS,
        allow_inf_nan=False,
        description=(
            "Seconds a fired window keeps its state after the watermark passed its end; "
            "records for it re-emit the window with updated values."
        ),
    )
    idle_timeout: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Wall-clock seconds without input after which open windows are emitted.",
    )


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Window geometry (nanoseconds) and how each state column combines."""

    size: int
    slide: int
    rules: Mapping[str, Rule]


@dataclass(frozen=True, slots=True)
class Extracted:
    """What an operator reads from one batch: per-row keys, event times and values."""

    keys: pa.Array | pa.ChunkedArray
    ts: I64
    values: Mapping[str, Values | pa.Array | pa.ChunkedArray]
    """Per-row values of each state column: a numpy array, a 0-d array (the same value on
    every row) or, for FIRST/LAST columns only, an Arrow array."""


@dataclass(frozen=True, slots=True)
class Groups:
    """A batch's window assignments, sorted by (key, window, event time, arrival)."""

    rows: I64
    """Input row of each assignment."""
    ts: I64
    starts: I64
    """Index of each group's first assignment."""
    ends: I64
    """Index after each group's last assignment."""
    keys: I64
    """Composite (key id, window) of each group, ascending."""


@dataclass(frozen=True, slots=True)
class Windowed:
    """Windows to emit, sorted by (start, key value)."""

    ids: I64
    starts: I64
    ends: I64
    columns: Mapping[str, Values]
    late: Bools
    """Whether each window had already fired on the watermark: a revision made by records
    that came after it (within the allowed lateness)."""

    def __len__(self) -> int:
        return len(self.ids)


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value)


class KeyIndex:
    """Dense integer ids for key values (e.g. symbols), in order of first appearance."""

    def __init__(self) -> None:
        self._ids: dict[Any, int] = {}
        self._values: list[Any] = []
        self._array: Values = np.empty(0, dtype=object)

    def encode(self, column: pa.Array | pa.ChunkedArray) -> I64:
        """The id of each row's key (vectorized: Python runs once per distinct key)."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        distinct = encoded.dictionary.to_pylist()
        lookup = np.fromiter((self._id(v) for v in distinct), dtype=np.int64, count=len(distinct))
        indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        return lookup[indices]

    def _id(self, value: Any) -> int:
        found = self._ids.get(value)
        if found is not None:
            return found
        if len(self._values) >= _MAX_KEYS:
            msg = f"more than {_MAX_KEYS} distinct keys"
            raise RecordError(msg)
        self._ids[value] = len(self._values)
        self._values.append(value)
        return len(self._values) - 1

    def values(self, ids: I64) -> Values:
        """The key value of each id."""
        if len(self._array) != len(self._values):
            self._array = np.fromiter(self._values, dtype=object, count=len(self._values))
        return self._array[ids]

    def ranks(self, ids: I64) -> I64:
        """Each id's rank among ``ids`` when ordered by key value (``None`` last)."""
        unique = np.unique(ids)
        by_value = sorted(range(len(unique)), key=lambda i: _sort_key(self._values[unique[i]]))
        rank = np.empty(len(unique), dtype=np.int64)
        rank[np.asarray(by_value, dtype=np.int64)] = np.arange(len(unique), dtype=np.int64)
        return rank[np.searchsorted(unique, ids)]


def _group_order(keys: I64, windows: I64, composite: I64, times: I64) -> I64:
    """A stable order by (key, window, event time): one radix sort when the batch is in
    event-time order and has few (key, window) pairs, else a lexicographic sort."""
    if not bool(np.all(times[1:] >= times[:-1])):
        return np.lexsort((times, composite))
    first_key, first_window = int(keys.min()), int(windows.min())
    key_span = int(keys.max()) - first_key + 1
    window_span = int(windows.max()) - first_window + 1
    if key_span * window_span <= _SMALL_CODES:
        codes = (keys - first_key) * window_span + (windows - first_window)
        return np.argsort(codes.astype(np.uint16), kind="stable").astype(np.int64)
    return np.argsort(composite, kind="stable").astype(np.int64)


def _take(values: Values | pa.Array | pa.ChunkedArray, rows: I64) -> Values:
    if isinstance(values, np.ndarray):
        return np.full(len(rows), values) if values.ndim == 0 else values[rows]
    taken = pc.take(values, pa.array(rows)).to_pylist()
    return np.fromiter(taken, dtype=object, count=len(taken))


class Windows:
    """Per-(key, window) partial aggregates of one operator, and its watermark."""

    def __init__(self, spec: WindowSpec, *, max_delay: int, lateness: int) -> None:
        self.size = spec.size
        self.slide = spec.slide
        self.rules = dict(spec.rules)
        self.max_delay = max_delay
        self.lateness = lateness
        self.keys = KeyIndex()
        self.max_event = _NO_EVENT
        self.horizon = _NO_EVENT - (1 << 60)  # below any watermark: nothing to purge
        """The watermark at which every window that a row so far touched is purged."""
        self._reset()

    def _reset(self) -> None:
        self._slots: I64 = np.empty(0, dtype=np.int64)
        self._fired: Bools = np.empty(0, dtype=np.bool_)
        self._dirty: Bools = np.empty(0, dtype=np.bool_)
        self._closed: Bools = np.empty(0, dtype=np.bool_)
        """Emitted once the watermark had reached the window's end: a later emission is
        a late revision."""
        self._state: dict[str, Values] = {}

    @property
    def watermark(self) -> int:
        return self.max_event - self.max_delay

    # -- one batch ----------------------------------------------------------------------

    def assign(self, ids: I64, ts: I64) -> tuple[Bools, Groups | None]:
        """Late rows, and the others' window assignments grouped by (key, window)."""
        n = len(ts)
        prior = np.empty(n, dtype=np.int64)
        prior[0] = self.max_event
        if n > 1:
            np.maximum.accumulate(ts[:-1], out=prior[1:])
            np.maximum(prior[1:], self.max_event, out=prior[1:])
        self.max_event = max(self.max_event, int(ts.max()))
        newest = ts // self.slide
        # The oldest window not purged before this row: its end + lateness > the watermark.
        alive = (prior - self.max_delay - self.size - self.lateness) // self.slide + 1
        oldest = np.maximum((ts - self.size) // self.slide + 1, alive)
        late = oldest > newest
        kept = np.flatnonzero(~late)
        if len(kept) == 0:
            return late, None
        # Purged once the watermark reaches the newest window's end + lateness.
        horizon = int(newest[kept].max()) * self.slide + self.size + self.lateness
        self.horizon = max(self.horizon, horizon)
        rows, windows = self._expand(kept, oldest[kept], newest[kept])
        return late, self.group(ids, ts, rows, windows)

    def composite(self, ids: I64, windows: I64) -> I64:
        """One sortable integer per (key id, window index)."""
        if len(windows) and (windows.min() < -_WINDOW_BIAS or windows.max() >= _WINDOW_BIAS):
            msg = "event time too far from 1970 for windows of this slide"
            raise RecordError(msg)
        return (ids << _KEY_SHIFT) + (windows + _WINDOW_BIAS)

    def group(self, ids: I64, ts: I64, rows: I64, windows: I64) -> Groups:
        """Assignments of ``rows`` to ``windows`` (indexes), grouped by (key, window)."""
        keys = ids[rows]
        composite = self.composite(keys, windows)
        times = ts[rows]
        order = _group_order(keys, windows, composite, times)
        composite = composite[order]
        starts = np.flatnonzero(np.concatenate(([True], composite[1:] != composite[:-1])))
        ends = np.append(starts[1:], len(order))
        return Groups(
            rows=rows[order],
            ts=times[order],
            starts=starts,
            ends=ends,
            keys=composite[starts],
        )

    def _expand(self, kept: I64, oldest: I64, newest: I64) -> tuple[I64, I64]:
        if self.slide == self.size:
            return kept, newest
        counts = newest - oldest + 1
        rows = np.repeat(kept, counts)
        offsets = np.arange(len(rows), dtype=np.int64) - np.repeat(
            np.cumsum(counts) - counts, counts
        )
        return rows, np.repeat(oldest, counts) + offsets

    def reduce(
        self, groups: Groups, values: Mapping[str, Values | pa.Array | pa.ChunkedArray]
    ) -> dict[str, Values]:
        """Each group's partial aggregate of every state column."""
        first_rows = groups.rows[groups.starts]
        last_rows = groups.rows[groups.ends - 1]
        out: dict[str, Values] = {
            "first_ts": groups.ts[groups.starts],
            "last_ts": groups.ts[groups.ends - 1],
        }
        sorted_values: dict[int, Values] = {}
        for name, rule in self.rules.items():
            column = values[name]
            if rule is Rule.FIRST:
                out[name] = _take(column, first_rows)
            elif rule is Rule.LAST:
                out[name] = _take(column, last_rows)
            elif not isinstance(column, np.ndarray):
                msg = f"state column {name!r} must be a numpy array to {rule.value} it"
                raise TypeError(msg)
            elif column.ndim == 0:
                sizes = groups.ends - groups.starts
                out[name] = column * sizes if rule is Rule.SUM else np.full(len(sizes), column)
            else:
                if id(column) not in sorted_values:
                    sorted_values[id(column)] = column[groups.rows]
                out[name] = _REDUCE[rule].reduceat(sorted_values[id(column)], groups.starts)
        return out

    def merge(self, keys: I64, partial: Mapping[str, Values], *, replace: bool = False) -> None:
        """Fold partial aggregates of groups (sorted by ``keys``) into the state, or with
        ``replace`` make them the windows' whole state (a window recomputed from scratch)."""
        pos = np.searchsorted(self._slots, keys)
        found = np.zeros(len(keys), dtype=np.bool_)
        inside = pos < len(self._slots)
        found[inside] = self._slots[pos[inside]] == keys[inside]
        if found.any():
            at, new = pos[found], {name: v[found] for name, v in partial.items()}
            if replace:  # dirty where something changed: the same state again is no revision
                changed = np.zeros(len(at), dtype=np.bool_)
                for name, v in new.items():
                    changed |= np.asarray(self._state[name][at] != v, dtype=np.bool_)
                    self._state[name][at] = v
                self._dirty[at] |= changed
            else:
                self._update(at, new)
        fresh = ~found
        if fresh.any():
            at = pos[fresh]
            self._slots = np.insert(self._slots, at, keys[fresh])
            self._fired = np.insert(self._fired, at, False)
            self._dirty = np.insert(self._dirty, at, True)
            self._closed = np.insert(self._closed, at, False)
            for name, v in partial.items():
                column = self._state.get(name, v[:0])
                self._state[name] = np.insert(column, at, v[fresh])

    def _update(self, at: I64, new: Mapping[str, Values]) -> None:
        state = self._state
        earlier = new["first_ts"] < state["first_ts"][at]
        later = new["last_ts"] >= state["last_ts"][at]
        for name, rule in self.rules.items():
            column = state[name]
            if rule is Rule.FIRST:
                column[at] = np.where(earlier, new[name], column[at])
            elif rule is Rule.LAST:
                column[at] = np.where(later, new[name], column[at])
            elif rule is Rule.SUM:
                column[at] = column[at] + new[name]
            else:
                column[at] = _REDUCE[rule](column[at], new[name])
        state["first_ts"][at] = np.minimum(state["first_ts"][at], new["first_ts"])
        state["last_ts"][at] = np.maximum(state["last_ts"][at], new["last_ts"])
        self._dirty[at] = True

    # -- emission -------------------------------------------------------------------------

    def _window_starts(self) -> I64:
        return ((self._slots & ((1 << _KEY_SHIFT) - 1)) - _WINDOW_BIAS) * self.slide

    def advance(self) -> Windowed | None:
        """Windows the watermark fired (or that changed since they fired); purge old ones."""
        ends = self._window_starts() + self.size
        watermark = self.watermark
        fire = (~self._fired & (ends <= watermark)) | (self._fired & self._dirty)
        out = self._select(fire)
        purge = ends <= watermark - self.lateness  # (ends + lateness may overflow near 2262)
        if purge.any():
            keep = ~purge
            self._slots = self._slots[keep]
            self._fired = self._fired[keep]
            self._dirty = self._dirty[keep]
            self._closed = self._closed[keep]
            self._state = {name: v[keep] for name, v in self._state.items()}
        return out

    def flush(self) -> Windowed | None:
        """Every window not emitted yet or changed since (idle timeout); state is kept."""
        return self._select(~self._fired | self._dirty)

    def drain(self) -> Windowed | None:
        """End of stream: like :meth:`flush`, then forget every window."""
        out = self.flush()
        self._reset()
        return out

    def _select(self, mask: Bools) -> Windowed | None:
        slots = np.flatnonzero(mask)
        if len(slots) == 0:
            return None
        composite = self._slots[slots]
        ids = composite >> _KEY_SHIFT
        starts = ((composite & ((1 << _KEY_SHIFT) - 1)) - _WINDOW_BIAS) * self.slide
        late = self._closed[slots]
        self._fired[slots] = True
        self._dirty[slots] = False
        self._closed[slots] = late | (starts + self.size <= self.watermark)
        order = np.lexsort((self.keys.ranks(ids), starts))
        picked = slots[order]
        return Windowed(
            ids=ids[order],
            starts=starts[order],
            ends=starts[order] + self.size,
            columns={name: v[picked] for name, v in self._state.items()},
            late=late[order],
        )


EP = TypeVar("EP", bound=EventTimeParams)


class EventTimeOperator(Operator[EP]):
    """Base of operators that aggregate per key over event-time windows.

    Subclasses say how windows are shaped (:meth:`_spec`), what they read from a batch
    (:meth:`_extract`) and what a closed window looks like (:meth:`_table`); they may
    filter a batch first (:meth:`_admit`).
    """

    late_port: ClassVar[str] = "late"

    def __init__(self, node_id: str, params: EP) -> None:
        super().__init__(node_id, params)
        self.windows = Windows(
            self._spec(),
            max_delay=nanos(params.max_delay),
            lateness=nanos(params.allowed_lateness),
        )
        if params.idle_timeout is not None:
            self.timer_interval = params.idle_timeout / 2
        self._last_input = time.monotonic()
        self._marks: list[tuple[int, Mark]] = []
        """Held marks, with the watermark that releases each (ascending)."""

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("out", self.late_port)

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        """Late rows leave as they came; windows make new columns (subclasses say)."""
        return None if port == "out" else given

    def _spec(self) -> WindowSpec:
        raise NotImplementedError

    def _extract(self, batch: pa.Table) -> Extracted:
        raise NotImplementedError

    def _table(self, windowed: Windowed) -> pa.Table:
        raise NotImplementedError

    async def _admit(self, batch: pa.Table, emit: Emit) -> pa.Table:
        """The rows to window (others may go to a side output)."""
        return batch

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        self._last_input = time.monotonic()
        batch = await self._admit(batch, emit)
        if batch.num_rows == 0:
            return
        extracted = self._extract(batch)
        ids = self.windows.keys.encode(extracted.keys)
        late, groups = self.windows.assign(ids, extracted.ts)
        n_late = int(np.count_nonzero(late))
        if n_late:
            self.context.count("late", n_late)
            await emit(batch.filter(pa.array(late)), self.late_port)
        if groups is not None:
            self._fold(extracted, ids, groups)
        await self._emit(self.windows.advance(), emit)
        await self._release(emit)

    async def on_mark(self, mark: Mark, emit: Emit) -> None:
        self._marks.append((self.windows.horizon, mark))
        await self._release(emit)

    async def _release(self, emit: Emit) -> None:
        """Forward the held marks whose rows' windows are all purged (in order)."""
        watermark = self.windows.watermark
        while self._marks and self._marks[0][0] <= watermark:
            _, mark = self._marks.pop(0)
            mark.stamps[self.node_id] = self.windows.max_event
            await emit.mark(mark)

    def restore(self, stamp: int) -> None:
        """Resume at the latest event time of the last acknowledged mark: rows whose
        windows were purged before the restart are late again, as they were then."""
        self.windows.max_event = max(self.windows.max_event, stamp)

    def _fold(self, extracted: Extracted, ids: I64, groups: Groups) -> None:
        """Add a batch's (non-late) rows to the state of their windows."""
        self.windows.merge(groups.keys, self.windows.reduce(groups, extracted.values))

    async def on_timer(self, emit: Emit) -> None:
        timeout = self.params.idle_timeout
        if timeout is not None and time.monotonic() - self._last_input >= timeout:
            await self._emit(self.windows.flush(), emit)

    async def finish(self, emit: Emit) -> None:
        await self._emit(self.windows.drain(), emit)
        # The drained windows may be partial (a stopping worker): the marks they hold are
        # dropped, so the entries behind them are delivered again to whoever resumes.
        self._marks.clear()

    async def _emit(self, windowed: Windowed | None, emit: Emit) -> None:
        if windowed is not None and len(windowed):
            await emit(self._table(windowed))

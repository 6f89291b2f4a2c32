"""``resample_ohlc``: trades, quotes or bars into OHLCV bars of one timeframe, in event time.

Each input batch is read by kind (DESIGN §6: columnar, no per-row Python):

- trades: OHLC of ``price``; ``volume`` = sum of ``size``; ``trade_count`` = trades;
  ``vwap`` = sum(price * size) / volume (null when the volume is 0);
- quotes: OHLC of the mid (or bid, or ask: ``quote_price``); volume 0; no trade count
  and no vwap;
- bars of a timeframe that divides the output one: open of the first, high max, low min,
  close of the last, volume and trade count summed (trade count null when an input bar
  has none: an unknown count makes the sum unknown), vwap volume-weighted (null when a bar
  with volume has none, or volume is 0).
  Input bars are versions of their (symbol, timeframe, start): a revised bar (from an
  upstream resampler's allowed lateness or idle timeout) replaces the earlier one (the
  highest ``(as_of, revision)`` wins, ties to the latest arrival), so chained resamplers
  never count a bar twice.

One node reads one kind of record (that of its first batch).

Versions (what a store orders a bar's emissions by, the highest kept): a bar's ``as_of``
is the latest ``as_of`` of the records in it (nulls ignored; none: null), its ``revision``
the number of input records folded into it (input bars count their ``revision + 1``, the
current version of each only, so a revised input bar raises it), and its ``reason`` is
``late`` when it re-emits a window that had already fired (allowed lateness). Every
emission of a window therefore has a greater ``(as_of, revision)`` than the one before (a
window is emitted again only when records changed it; input bars that change nothing emit
nothing), and a replay of the same input emits the same versions: nothing depends on the
wall clock. An input bar that arrives with a lower version than the one kept for its key
is ignored.

"First" is the earliest event time (ties: earliest arrival) and "last" the latest (ties:
latest arrival), across batches too. Windows follow the event-time rules of
``_eventtime`` (watermark, allowed lateness with revisions, ``late`` output, idle
timeout). With a ``calendar`` (e.g. ``XNYS``, needs the ``calendars`` extra), records
outside its trading minutes go to the ``outside_session`` output and are counted.

Output: ``records.BARS`` tables sorted by (start, symbol), valid core ``Bar`` rows.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from market_data_core import Timeframe
from market_data_core.exceptions import TimeframeError
from market_data_pipeline import records
from market_data_pipeline.components import Emit
from market_data_pipeline.exceptions import RecordError
from market_data_pipeline.operators._eventtime import (
    I64,
    EventTimeOperator,
    EventTimeParams,
    Extracted,
    Groups,
    Rule,
    Values,
    Windowed,
    Windows,
    WindowSpec,
    as_of_array,
    as_of_values,
    int64_times,
)
from market_data_pipeline.operators._sessions import Sessions

__all__ = ["ResampleOHLC", "ResampleParams"]

_RULES: Final = {
    "open": Rule.FIRST,
    "high": Rule.MAX,
    "low": Rule.MIN,
    "close": Rule.LAST,
    "volume": Rule.SUM,
    "pv": Rule.SUM,
    "count": Rule.SUM,
    "no_count": Rule.ANY,
    "no_vwap": Rule.ANY,
    "as_of": Rule.MAX,
    "records": Rule.SUM,
}
_IDENTIFIER: Final = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
_FRAME: Final = "input_timeframe"
"""Seconds of each input bar's timeframe (part of an input bar's key, not a state column)."""
# The same value on every row (0-d arrays: see ``Extracted``).
_ONE: Final = np.asarray(1, dtype=np.int64)
_NO_COUNT: Final = np.asarray(0, dtype=np.int64)
_ZERO: Final = np.asarray(0.0, dtype=np.float64)
_TRUE: Final = np.asarray(True)
_FALSE: Final = np.asarray(False)


class ResampleParams(EventTimeParams):
    timeframe: Timeframe = Field(description="Bar timeframe: 1s, 1m, 5m, 1h, 1d...")
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=_IDENTIFIER,
        description="The bars' source field (default: the job name).",
    )
    quote_price: Literal["mid", "bid", "ask"] = Field(
        default="mid", description="Which price of a quote makes the bars."
    )
    calendar: str | None = Field(
        default=None,
        description="Exchange calendar (e.g. XNYS): records outside its sessions go aside.",
    )


class ResampleOHLC(EventTimeOperator[ResampleParams]):
    """OHLCV bars of one timeframe from trades, quotes or lower-timeframe bars."""

    Params = ResampleParams
    description: ClassVar[str] = "Resample trades, quotes or bars into OHLCV bars (event time)."

    def __init__(self, node_id: str, params: ResampleParams) -> None:
        super().__init__(node_id, params)
        self.timeframe = params.timeframe
        self._sessions = Sessions(params.calendar) if params.calendar is not None else None
        self._where = f"node {node_id!r}"
        self._input: records.Kind | None = None
        self._frames: dict[str, Timeframe] = {}
        self._bars = _InputBars(self.windows)

    @property
    def outputs(self) -> tuple[str, ...]:
        base = super().outputs
        return (*base, "outside_session") if self._sessions is not None else base

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        return records.BARS if port == "out" else given

    def _spec(self) -> WindowSpec:
        size = self.params.timeframe.seconds * 1_000_000_000
        return WindowSpec(size=size, slide=size, rules=_RULES)

    def _kind(self, batch: pa.Table) -> records.Kind:
        kind = records.kind_of(batch)
        if kind not in {records.Kind.TRADES, records.Kind.QUOTES, records.Kind.BARS}:
            raise RecordError(
                f"expects trades, quotes or bars, got a table of {batch.schema.names}",
                source=self._where,
            )
        assert kind is not None
        if self._input is None:
            self._input = kind
        elif kind is not self._input:
            raise RecordError(
                f"got {kind} after {self._input}: one resample node reads one kind of record",
                source=self._where,
            )
        return kind

    async def _admit(self, batch: pa.Table, emit: Emit) -> pa.Table:
        kind = self._kind(batch)
        if kind is records.Kind.BARS:
            self._check_timeframes(batch)
        if self._sessions is None:
            return batch
        time_field = "start" if kind is records.Kind.BARS else "ts"
        inside = self._sessions.mask(int64_times(batch.column(time_field)))
        outside = int(len(inside) - np.count_nonzero(inside))
        if outside:
            self.context.count("outside_session", outside)
            await emit(batch.filter(pa.array(~inside)), "outside_session")
            batch = batch.filter(pa.array(inside))
        return batch

    def _check_timeframes(self, batch: pa.Table) -> None:
        for text in pc.unique(batch.column("timeframe")).to_pylist():
            if not self._frame(text).divides(self.timeframe):
                raise RecordError(
                    f"input bars of timeframe {text} cannot make {self.timeframe} bars "
                    f"({text} does not divide {self.timeframe})",
                    source=self._where,
                    field="timeframe",
                )

    def _frame(self, text: str) -> Timeframe:
        if text not in self._frames:
            try:
                self._frames[text] = Timeframe.parse(text)
            except TimeframeError as error:
                raise RecordError(str(error), source=self._where, field="timeframe") from None
        return self._frames[text]

    def _frame_seconds(self, column: pa.ChunkedArray) -> I64:
        encoded = pc.dictionary_encode(column.combine_chunks())
        seconds = [self._frame(text).seconds for text in encoded.dictionary.to_pylist()]
        lookup = np.asarray(seconds, dtype=np.int64)
        return lookup[np.asarray(encoded.indices.to_numpy(), dtype=np.int64)]

    def _extract(self, batch: pa.Table) -> Extracted:
        kind = self._kind(batch)
        if kind is records.Kind.BARS:
            return self._from_bars(batch)
        if kind is records.Kind.TRADES:
            price = _floats(batch, "price")
            volume = _floats(batch, "size")
            pv = price * volume
            count, no_count = _ONE, _FALSE
        else:
            price = self._quote_prices(batch)
            volume = pv = _ZERO
            count, no_count = _NO_COUNT, _TRUE
        values: dict[str, Values] = {
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": volume,
            "pv": pv,
            "count": count,
            "no_count": no_count,
            "no_vwap": _FALSE,
            "as_of": as_of_values(batch),
            "records": _ONE,
        }
        return Extracted(keys=batch.column("symbol"), ts=int64_times(batch["ts"]), values=values)

    def _quote_prices(self, batch: pa.Table) -> Values:
        if self.params.quote_price == "mid":
            return (_floats(batch, "bid") + _floats(batch, "ask")) / 2
        return _floats(batch, self.params.quote_price)

    def _from_bars(self, batch: pa.Table) -> Extracted:
        volume = _floats(batch, "volume")
        vwap_column = batch.column("vwap")
        has_vwap = np.asarray(pc.is_valid(vwap_column).to_numpy(zero_copy_only=False))
        vwap = np.asarray(pc.fill_null(vwap_column, 0.0).to_numpy(), dtype=np.float64)
        counts = batch.column("trade_count")
        revisions = (
            batch.column("revision") if "revision" in batch.column_names else pa.nulls(len(volume))
        )
        values: dict[str, Values] = {
            "open": _floats(batch, "open"),
            "high": _floats(batch, "high"),
            "low": _floats(batch, "low"),
            "close": _floats(batch, "close"),
            "volume": volume,
            "pv": np.where(has_vwap, vwap * volume, 0.0),
            "count": np.asarray(pc.fill_null(counts, 0).to_numpy(), dtype=np.int64),
            "no_count": np.asarray(pc.is_null(counts).to_numpy(zero_copy_only=False)),
            "no_vwap": ~has_vwap & (volume > 0),
            "as_of": as_of_values(batch),
            # a bar stands for its revision + 1 records (its own versions, and itself)
            "records": np.asarray(
                pc.fill_null(pc.cast(revisions, pa.int64()), 0).to_numpy(), dtype=np.int64
            )
            + 1,
            _FRAME: self._frame_seconds(batch.column("timeframe")),
        }
        return Extracted(keys=batch.column("symbol"), ts=int64_times(batch["start"]), values=values)

    def _fold(self, extracted: Extracted, ids: I64, groups: Groups) -> None:
        if self._input is records.Kind.BARS:
            self._bars.fold(ids, extracted, np.sort(groups.rows))
        else:
            super()._fold(extracted, ids, groups)

    async def finish(self, emit: Emit) -> None:
        await super().finish(emit)
        self._bars.clear()

    def _table(self, windowed: Windowed) -> pa.Table:
        n = len(windowed)
        columns = windowed.columns
        low, high, volume = columns["low"], columns["high"], columns["volume"]
        has_vwap = (volume > 0) & ~columns["no_vwap"]
        vwap = np.divide(columns["pv"], volume, out=np.zeros(n), where=has_vwap)
        vwap = np.clip(vwap, low, high)
        source = self.params.source or self.context.job
        return pa.table(
            {
                "source": pa.array(np.full(n, source, dtype=object), pa.string()),
                "symbol": pa.array(self.windows.keys.values(windowed.ids), pa.string()),
                "timeframe": pa.array(np.full(n, str(self.timeframe), dtype=object), pa.string()),
                "start": pa.array(windowed.starts, pa.int64()).cast(records.TIMESTAMP),
                "open": pa.array(columns["open"], pa.float64()),
                "high": pa.array(high, pa.float64()),
                "low": pa.array(low, pa.float64()),
                "close": pa.array(columns["close"], pa.float64()),
                "volume": pa.array(volume, pa.float64()),
                "trade_count": pa.array(columns["count"], pa.int64(), mask=columns["no_count"]),
                "vwap": pa.array(vwap, pa.float64(), mask=~has_vwap),
                "as_of": as_of_array(columns["as_of"]),
                "revision": pa.array(columns["records"], pa.int64()),
                "reason": pa.array(
                    np.full(n, "late", dtype=object), pa.string(), mask=~windowed.late
                ),
            },
            schema=records.BARS,
        )


def _floats(batch: pa.Table, name: str) -> Values:
    return np.asarray(batch.column(name).to_numpy(), dtype=np.float64)


class _InputBars:
    """Input bars kept while their output window is kept.

    Bars are versions of their (symbol, timeframe, start): a bar that arrives again (a
    revision from an upstream resampler with allowed lateness or an idle timeout, or a
    replay) replaces the earlier one unless its version is lower, and its output window is
    recomputed from the bars kept for it instead of counting the bar twice (the same bar
    again changes nothing, and emits nothing).
    """

    def __init__(self, windows: Windows) -> None:
        self.windows = windows
        self.clear()

    def clear(self) -> None:
        self.ids: I64 = np.empty(0, dtype=np.int64)
        self.starts: I64 = np.empty(0, dtype=np.int64)
        self.values: dict[str, Values] = {}

    def fold(self, ids: I64, extracted: Extracted, rows: I64) -> None:
        """Keep the batch's ``rows`` (the non-late ones, in arrival order); recompute the
        output windows they fall in."""
        new_ids, new_starts = ids[rows], extracted.ts[rows]
        self.ids = np.concatenate((self.ids, new_ids))
        self.starts = np.concatenate((self.starts, new_starts))
        for name, column in extracted.values.items():
            assert isinstance(column, np.ndarray)
            kept = self.values.get(name, column[:0])
            self.values[name] = np.concatenate((kept, column[rows]))
        versions = (self.values["as_of"], self.values["records"])
        self._keep(_latest(self.ids, self.starts, self.values[_FRAME], versions))
        windows = self.windows
        slide = windows.slide
        touched = np.unique(windows.composite(new_ids, new_starts // slide))
        member = np.flatnonzero(np.isin(windows.composite(self.ids, self.starts // slide), touched))
        groups = windows.group(self.ids, self.starts, member, self.starts[member] // slide)
        windows.merge(groups.keys, windows.reduce(groups, self.values), replace=True)
        ends = self.starts // slide * slide + windows.size
        self._keep(np.flatnonzero(ends > windows.watermark - windows.lateness))

    def _keep(self, rows: I64) -> None:
        if len(rows) == len(self.ids):
            return
        self.ids = self.ids[rows]
        self.starts = self.starts[rows]
        self.values = {name: column[rows] for name, column in self.values.items()}


def _latest(ids: I64, starts: I64, frames: I64, versions: tuple[I64, I64]) -> I64:
    """Rows that are the newest version of their (key, timeframe, start): the highest
    ``(as_of, revision)``, ties to the last arrival; in arrival order."""
    arrival = np.arange(len(ids), dtype=np.int64)
    as_of, revision = versions
    order = np.lexsort((arrival, revision, as_of, starts, frames, ids))
    same = (
        (ids[order][1:] == ids[order][:-1])
        & (frames[order][1:] == frames[order][:-1])
        & (starts[order][1:] == starts[order][:-1])
    )
    last = np.append(~same, True)
    return np.sort(order[last])

"""Replay a file of trades, quotes or bars: CSV (optionally gzipped), NDJSON or Parquet.

Files are read incrementally (``pyarrow.csv`` streaming reader, Parquet row batches, NDJSON
line chunks) and every batch is checked at the edge (:func:`records.check`): a bad value
raises a :class:`RecordError` naming the file, the line (the row number for Parquet) and
the field. A file without records (zero bytes, blank lines, a header only, a Parquet file
of no rows) gives no batch and a warning naming it; a zero-byte Parquet file is no Parquet
file, an error. Columns are found by name (``ts`` from ``timestamp``, ``timestamp_utc``,
``time``...; ``size`` from ``quantity``, ``qty``...; ``received_at`` from ``ts_recv``...), or
mapped explicitly with ``columns: {field: file column}``. Naive timestamps need ``timezone``
(``UTC``, or an IANA zone name): silently guessing a zone would shift every record.
Timestamps keep their nanoseconds (ISO text with up to nine fractional digits, integers in
``timestamp_unit``); one that cannot be read exactly is an error, never truncated.

Versions come from the input, never from the clock of the run: every record's ``as_of`` is
the file's ``as_of`` column where it has one, else the ``as_of`` param, else the file's
modification time (to the nanosecond), so replaying an unchanged file gives the same
versions. Trades and quotes without a venue id (``trade_id``, ``sequence``) get their
``ordinal`` among identical ticks (:class:`~market_data_core.columns.Ordinals`, one per
read of the file), the same whatever ``batch_size``.

``speed: 0`` replays as fast as the pipeline takes it; ``speed: k`` replays k times faster
than the data were recorded, sleeping on event-time gaps (batches are cut into slices of
about 50 ms of wall time, so pacing stays cheap). Under backpressure the provider pauses:
nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import io
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import structlog
from pydantic import Field, field_validator

from market_data_core import Symbol, Timeframe
from market_data_core.columns import Ordinals
from market_data_core.timestamps import UtcTimestamp, to_ns
from market_data_pipeline import records
from market_data_pipeline.components import Extent, Params, Provider
from market_data_pipeline.exceptions import RecordError
from market_data_pipeline.providers._timestamps import (
    Clock,
    Pacer,
    Sleep,
    TimeUnit,
    first_bad,
    stoppable_sleep,
    to_utc_nanos,
)

__all__ = ["ReplayParams", "ReplayProvider", "detect_format"]

logger = structlog.get_logger(__name__)

Format = Literal["auto", "csv", "ndjson", "parquet"]
Lines = npt.NDArray[np.int64]

_QUANTUM: Final = 0.05
"""Wall-clock seconds of event time per slice when pacing (``speed > 0``)."""
_NS: Final = 1_000_000_000
_EXTENSIONS: Final[dict[str, Literal["csv", "ndjson", "parquet"]]] = {
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_CANDIDATES: Final[dict[str, tuple[str, ...]]] = {
    "ts": ("ts", "timestamp", "timestamp_utc", "time", "datetime", "date"),
    "start": ("start", "ts", "timestamp", "timestamp_utc", "time", "datetime", "date"),
    "symbol": ("symbol", "ticker", "instrument", "instrument_id"),
    "source": ("source",),
    "timeframe": ("timeframe",),
    "price": ("price", "last", "last_price"),
    "size": ("size", "quantity", "qty", "volume", "amount"),
    "exchange": ("exchange", "venue"),
    "trade_id": ("trade_id", "id", "tid"),
    "side": ("side", "aggressor_side"),
    "conditions": ("conditions",),
    "bid": ("bid", "bid_price", "bid_px"),
    "ask": ("ask", "ask_price", "ask_px", "offer"),
    "bid_size": ("bid_size", "bid_qty", "bid_volume", "bid_sz"),
    "ask_size": ("ask_size", "ask_qty", "ask_volume", "ask_sz"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "trade_count": ("trade_count", "trades", "count", "n_trades"),
    "vwap": ("vwap",),
    "received_at": ("received_at", "ts_recv", "recv_ts", "receive_time"),
    "sequence": ("sequence", "seq"),
    "ordinal": ("ordinal",),
    "as_of": ("as_of",),
    "revision": ("revision",),
    "reason": ("reason",),
}
_BUYER_MAKER: Final = ("buyer_maker", "is_buyer_maker")
"""Binance's flag: the buyer was the maker, so the aggressor sold."""
_DEFAULTS: Final[dict[str, float]] = {"bid_size": 0.0, "ask_size": 0.0, "volume": 0.0}
"""Fields a file may lack: quote sizes and bar volume (FX bid bars have none)."""
_SOURCE: Final = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
"""What ``Bar.source`` accepts (an identifier: no spaces)."""
_SIDES: Final = {"buy": "buy", "b": "buy", "bid": "buy", "sell": "sell", "s": "sell"}
_SIDES_FULL: Final = {**_SIDES, "ask": "sell"}


def detect_format(path: str | Path) -> Literal["csv", "ndjson", "parquet"]:
    """The format from the extension (``.csv``, ``.csv.gz``, ``.ndjson``, ``.jsonl``,
    ``.parquet``; a trailing ``.gz`` is decompressed)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in {".gz", ".gzip"}:
        suffixes = suffixes[:-1]
    found = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if found is None:
        msg = (
            f"cannot tell the format of {str(path)!r} from its extension: set "
            "format: csv | ndjson | parquet"
        )
        raise ValueError(msg)
    return found


class ReplayParams(Params):
    path: str
    format: Format = "auto"
    kind: Literal["trades", "quotes", "bars"] = "trades"
    columns: dict[str, str] = Field(
        default_factory=dict, description="Our field -> the file's column, where names differ."
    )
    symbol: Symbol | None = Field(
        default=None, description="The symbol of every row (overrides a symbol column)."
    )
    timeframe: str | None = Field(default=None, description="Bars: their timeframe ('1m').")
    source: str | None = Field(
        default=None,
        pattern=_SOURCE,
        max_length=128,
        description="Bars: who produced them (default replay).",
    )
    timezone: str | None = Field(
        default=None, description="Zone of naive timestamps ('UTC'); None: they are an error."
    )
    timestamp_unit: TimeUnit = Field(
        default="auto",
        description=(
            "Unit of numeric timestamps (s, ms, us, ns); auto: from their magnitude, per column."
        ),
    )
    as_of: UtcTimestamp | None = Field(
        default=None,
        description=(
            "The records' version time (when this data was known; ISO, up to 9 fractional "
            "digits). A file's as_of column wins; default: the file's modification time, to "
            "the nanosecond (st_mtime_ns), so a rerun on the same file gives the same versions."
        ),
    )
    speed: float = Field(default=0.0, ge=0, description="0: as fast as possible; k: k x real time.")
    batch_size: int = Field(default=10_000, ge=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str | None) -> str | None:
        return None if value is None else str(Timeframe.parse(value))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                msg = f"unknown timezone {value!r} (use UTC or an IANA name like Europe/London)"
                raise ValueError(msg) from None
        return value


class ReplayProvider(Provider[ReplayParams]):
    """Replays a CSV, NDJSON or Parquet file of trades, quotes or bars."""

    Params = ReplayParams
    description: ClassVar[str] = "Replays a CSV / NDJSON / Parquet file (optionally paced)."

    def __init__(self, node_id: str, params: ReplayParams) -> None:
        super().__init__(node_id, params)
        self.kind = records.Kind(params.kind)
        self.schema = records.schema_of(self.kind)
        self.format = detect_format(params.path) if params.format == "auto" else params.format
        unknown = sorted(set(params.columns) - set(self.schema.names))
        if unknown:
            msg = (
                f"columns maps unknown field(s) {', '.join(unknown)}; fields of "
                f"{params.kind}: {', '.join(self.schema.names)}"
            )
            raise ValueError(msg)
        if params.symbol is not None and "symbol" in params.columns:
            msg = "give either symbol (a constant) or columns.symbol, not both"
            raise ValueError(msg)
        self.source = params.path
        self.time_field = "start" if self.kind is records.Kind.BARS else "ts"
        self.clock: Clock = time.monotonic
        """Wall clock of the pacing (tests replace it)."""
        self.sleep: Sleep | None = None
        """Sleep of the pacing (default: one that wakes up when the job stops)."""
        self._units: dict[str, TimeUnit] = {}
        """The unit numbers of each timestamp field were read in (auto: resolved once)."""
        self._as_of: int | None = None
        """The version time of rows without an ``as_of`` of their own (ns)."""
        self._mapping: dict[str, str] = {}
        self._buyer_maker: str | None = None
        self._files = contextlib.ExitStack()
        self._raw: Any = None
        """The file as read from disk (before any decompression), while it is open: how
        many of its bytes were read is the progress of a CSV or NDJSON replay."""
        self._read_to_end = False
        self._rows_parsed = 0
        self._total: int | None = None

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        return self.schema

    async def close(self) -> None:
        self._files.close()
        await super().close()

    def extent(self) -> Extent:
        """Parquet: the rows emitted of the rows the file's metadata holds. CSV and NDJSON
        (gzipped too): the bytes of the file read so far of its size on disk (a row count
        would need a read of the whole file first)."""
        path = Path(self.params.path)
        if self._total is None:
            try:
                if self.format == "parquet":
                    self._total = pq.read_metadata(str(path)).num_rows
                else:
                    self._total = path.stat().st_size
            except (OSError, pa.ArrowException):
                return Extent(0, None, "rows" if self.format == "parquet" else "bytes")
        if self.format == "parquet":
            done = self.ctx.stats.items_out if self.ctx is not None else 0
            return Extent(min(done, self._total), self._total)
        emitted = self.ctx.stats.items_out if self.ctx is not None else 0
        if self._read_to_end:
            read = self._total
        elif self._raw is not None and not self._raw.closed:
            read = min(self._raw.tell(), self._total)
        else:
            read = 0
        # what was read may wait to be emitted (a paced replay, a full channel): the bytes
        # read, in the share of the rows parsed from them that were emitted
        if self._rows_parsed:
            share = min(emitted / self._rows_parsed, 1.0)
        else:
            share = 1.0 if self._read_to_end else 0.0  # a file without records is done
        return Extent(round(read * share), self._total, "bytes")

    # -- reading ------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[pa.Table]:
        pacer = self._pacer()
        quantum = round(_QUANTUM * self.params.speed * _NS)
        origin: int | None = None
        for table in self.read():
            if pacer is None:
                yield table
                await asyncio.sleep(0)  # let the rest of the pipeline run between batches
                continue
            nanos = table.column(self.time_field).cast(pa.int64()).to_numpy()
            origin = int(nanos[0]) if origin is None else origin
            for first, end in _slices(nanos, origin, quantum):
                await pacer.wait(nanos[first] / _NS)
                yield table.slice(first, end - first)

    def _pacer(self) -> Pacer | None:
        if self.params.speed == 0:
            return None
        ctx = self.context
        sleep = self.sleep or (lambda s: stoppable_sleep(s, ctx.stopping))
        return Pacer(self.params.speed, clock=self.clock, sleep=sleep)

    def read(self) -> Iterator[pa.Table]:
        """Every checked batch of the file, without pacing (synchronous), with its versions
        and ordinals; the file is closed when the iteration ends."""
        ordinals = Ordinals()  # one per read of the file: a reread gives the same ordinals
        rows = 0
        try:
            for raw, lines in self._raw_batches():
                rows += raw.num_rows
                yield ordinals.assign(self.convert(raw, lines), self.kind)
            self._read_to_end = True
            if rows == 0:
                # zero bytes, a header only, a Parquet file of no rows: a run without records
                # (its file sinks write empty files, replacing a previous run's), said aloud
                logger.warning(
                    "the replayed file has no records: what comes from it is empty",
                    node=self.node_id,
                    path=self.source,
                )
        finally:
            self._files.close()

    def _raw_batches(self) -> Iterator[tuple[pa.Table, Lines]]:
        path = Path(self.params.path)
        if not path.is_file():
            raise RecordError("file not found", source=self.source)
        if self.format == "parquet" and path.stat().st_size == 0:
            raise RecordError(
                "not a readable Parquet file: it is empty (0 bytes), while a Parquet file"
                " without rows still holds its columns (this one was cut or never written)",
                source=self.source,
            )
        given = self.params.as_of
        self._as_of = to_ns(given) if given is not None else os.stat(path).st_mtime_ns
        readers = {"csv": self._csv, "ndjson": self._ndjson, "parquet": self._parquet}
        pending: list[tuple[pa.Table, Lines]] = []
        rows = 0
        size = self.params.batch_size
        for part in readers[self.format](path):
            pending.append(part)
            rows += part[0].num_rows
            self._rows_parsed += part[0].num_rows
            while rows >= size:
                table, lines = _concat(pending)
                yield table.slice(0, size), lines[:size]
                pending = [(table.slice(size), lines[size:])] if rows > size else []
                rows -= size
        if rows:
            yield _concat(pending)

    def _csv(self, path: Path) -> Iterator[tuple[pa.Table, Lines]]:
        header = _csv_header(path, self.params.delimiter)
        if header is None:  # no text at all (zero bytes, blank lines): no records
            return
        self._resolve(header)
        bad_rows: list[int] = []

        def invalid(row: Any) -> str:
            bad_rows.append(int(row.number))
            return "error"

        self._raw = self._files.enter_context(pa.OSFile(str(path)))
        stream = self._files.enter_context(
            pa.input_stream(self._raw, compression=_compression(path))
        )
        options = {
            "read_options": pacsv.ReadOptions(use_threads=False, block_size=1 << 20),
            "parse_options": pacsv.ParseOptions(
                delimiter=self.params.delimiter,
                ignore_empty_lines=False,
                invalid_row_handler=invalid,
            ),
            "convert_options": pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                # empty fields are missing; "NaN", "NA", "N/A" are values the checks name
                # (Arrow's defaults would read them as missing)
                null_values=_CSV_NULLS,
            ),
        }
        reader: Any = None
        line = 2
        while True:
            try:
                if reader is None:
                    reader = pacsv.open_csv(stream, **options)
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as error:
                where = bad_rows[-1] if bad_rows and bad_rows[-1] > 0 else None
                raise RecordError(str(error), source=self.source, line=where) from None
            lines = np.arange(line, line + batch.num_rows, dtype=np.int64)
            line += batch.num_rows
            table = pa.Table.from_batches([batch])
            blank = _all_null(table)
            if blank is not None:
                table, lines = table.filter(pc.invert(blank)), lines[~blank.to_numpy()]
            yield table, lines

    def _parquet(self, path: Path) -> Iterator[tuple[pa.Table, Lines]]:
        try:
            file = self._files.enter_context(pq.ParquetFile(str(path)))
        except (pa.ArrowException, OSError) as error:
            raise RecordError(f"not a readable Parquet file: {error}", source=self.source) from None
        names = file.schema_arrow.names
        self._resolve(names)
        wanted = sorted(self._file_columns(), key=names.index)
        row = 1
        batches = file.iter_batches(batch_size=self.params.batch_size, columns=wanted)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as error:
                message = f"cannot read the Parquet file after row {row - 1}: {error}"
                raise RecordError(message, source=self.source) from None
            yield pa.Table.from_batches([batch]), np.arange(row, row + batch.num_rows)
            row += batch.num_rows

    def _ndjson(self, path: Path) -> Iterator[tuple[pa.Table, Lines]]:
        self._raw = self._files.enter_context(path.open("rb"))
        handle: IO[str] = self._files.enter_context(_open_text(path, self._raw))
        resolved = False
        chunk: list[dict[str, Any]] = []
        numbers: list[int] = []
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except json.JSONDecodeError as error:
                raise RecordError(
                    f"not JSON: {error.msg}", source=self.source, line=number
                ) from None
            if not isinstance(item, dict):
                raise RecordError("not a JSON object", source=self.source, line=number)
            if not resolved:
                self._resolve(list(item))
                resolved = True
            chunk.append(item)
            numbers.append(number)
            if len(chunk) >= self.params.batch_size:
                yield self._json_table(chunk, numbers), np.array(numbers, dtype=np.int64)
                chunk, numbers = [], []
        if chunk:
            yield self._json_table(chunk, numbers), np.array(numbers, dtype=np.int64)

    def _json_table(self, rows: list[dict[str, Any]], numbers: list[int]) -> pa.Table:
        columns = {}
        for name in self._file_columns():
            values = [row.get(name) for row in rows]
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                columns[name] = pa.array([None if v is None else str(v) for v in values])
        return pa.table(columns) if columns else pa.table({"_": pa.nulls(len(numbers))})

    # -- columns ------------------------------------------------------------------------

    def _file_columns(self) -> set[str]:
        """The file's columns this replay reads."""
        wanted = set(self._mapping.values())
        if self._buyer_maker is not None:
            wanted.add(self._buyer_maker)
        return wanted

    def _resolve(self, names: list[str]) -> None:
        """Map our fields to the file's columns; complain about what is missing."""
        by_lower = {name.lower(): name for name in names}
        explicit = self.params.columns
        for field, column in explicit.items():
            if column not in names:
                raise RecordError(
                    f"no column {column!r} (mapped to {field!r}); the file has: "
                    + ", ".join(names),
                    source=self.source,
                )
        mapping = dict(explicit)
        for field in self.schema.names:
            if field in mapping or (field == "symbol" and self.params.symbol is not None):
                continue
            for candidate in _CANDIDATES.get(field, ()):
                found = by_lower.get(candidate)
                if found is not None and found not in mapping.values():
                    mapping[field] = found
                    break
        if self.kind is records.Kind.TRADES and "side" not in mapping:
            self._buyer_maker = next((by_lower[c] for c in _BUYER_MAKER if c in by_lower), None)
        self._mapping = mapping
        self._check_required(names)

    def _check_required(self, names: list[str]) -> None:
        constants = {
            "symbol": self.params.symbol,
            "timeframe": self.params.timeframe,
            "source": self.params.source or "replay",
        }
        for field in self.schema:
            if field.nullable or field.name in self._mapping or field.name in _DEFAULTS:
                continue
            if constants.get(field.name) is not None:
                continue
            looked = ", ".join(_CANDIDATES.get(field.name, (field.name,)))
            hint = {
                "symbol": "set symbol: <name> (the file has no symbol column)",
                "timeframe": "set timeframe: 1m (the file has no timeframe column)",
            }.get(field.name, f"map it with columns: {{{field.name}: <column>}}")
            raise RecordError(
                f"no column for {field.name!r} (looked for {looked}; the file has "
                f"{', '.join(names)}): {hint}",
                source=self.source,
                field=field.name,
            )

    # -- conversion ---------------------------------------------------------------------

    def convert(self, raw: pa.Table, lines: Lines) -> pa.Table:
        """A raw batch of the file's columns as a checked batch of the kind's schema."""
        n = raw.num_rows
        columns: dict[str, pa.Array] = {}
        for field in self.schema:
            column = self._mapping.get(field.name)
            if column is not None:
                columns[field.name] = self._column(raw.column(column), field, lines)
            else:
                columns[field.name] = self._default(raw, field, n, lines)
        table = pa.table(columns, schema=self.schema)
        try:
            return records.check(table, self.kind, source=self.source, first_line=0)
        except RecordError as error:
            line = int(lines[error.line]) if error.line is not None else None
            raise RecordError(
                error.reason, source=self.source, line=line, field=error.field
            ) from None

    def _column(self, column: pa.ChunkedArray, field: pa.Field, lines: Lines) -> pa.Array:
        array = column.combine_chunks()
        name = field.name
        if pa.types.is_timestamp(field.type):
            converted, self._units[name] = to_utc_nanos(
                array,
                source=self.source,
                field=name,
                lines=lines,
                timezone=self.params.timezone,
                unit=self._units.get(name, self.params.timestamp_unit),
            )
            if name == "as_of" and self._as_of is not None:
                return pc.fill_null(converted, pa.scalar(self._as_of, pa.int64()).cast(field.type))
            return converted
        if name == "conditions":
            return self._conditions(array, lines)
        if name == "side":
            return self._side(array, lines)
        if pa.types.is_string(field.type):
            return array if pa.types.is_string(array.type) else pc.cast(array, pa.string())
        return self._number(array, field, lines)

    def _number(self, array: pa.Array, field: pa.Field, lines: Lines) -> pa.Array:
        source = array
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            source = pc.utf8_trim_whitespace(array)
        try:
            return pc.cast(source, field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = first_bad(source, lambda a: pc.cast(a, field.type))
            raise RecordError(
                f"is not a number ({array[bad].as_py()!r})",
                source=self.source,
                line=int(lines[bad]),
                field=field.name,
            ) from None

    def _side(self, array: pa.Array, lines: Lines) -> pa.Array:
        values = pc.utf8_lower(pc.cast(array, pa.string())).to_pylist()
        out = []
        for index, value in enumerate(values):
            if value is not None and value.strip() not in _SIDES_FULL:
                raise RecordError(
                    f"is not buy or sell ({value!r})",
                    source=self.source,
                    line=int(lines[index]),
                    field="side",
                )
            out.append(None if value is None else _SIDES_FULL[value.strip()])
        return pa.array(out, pa.string())

    def _conditions(self, array: pa.Array, lines: Lines) -> pa.Array:
        target = pa.list_(pa.string())
        if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            return pc.cast(array, target)
        out: list[list[str] | None] = []
        for index, value in enumerate(pc.cast(array, pa.string()).to_pylist()):
            if value is None or not value.strip():
                out.append(None)
                continue
            try:
                parsed = json.loads(value) if value.lstrip().startswith("[") else value.split(";")
            except json.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
                raise RecordError(
                    f"is not a list of conditions ({value!r})",
                    source=self.source,
                    line=int(lines[index]),
                    field="conditions",
                )
            out.append(parsed)
        return pa.array(out, target)

    def _default(self, raw: pa.Table, field: pa.Field, n: int, lines: Lines) -> pa.Array:
        name = field.name
        constant: str | float | None = {
            "symbol": self.params.symbol,
            "timeframe": self.params.timeframe,
            "source": self.params.source or "replay",
        }.get(name, _DEFAULTS.get(name))
        if name == "side" and self._buyer_maker is not None:
            return self._from_buyer_maker(raw.column(self._buyer_maker).combine_chunks(), lines)
        if name == "as_of" and self._as_of is not None:
            return pa.repeat(pa.scalar(self._as_of, pa.int64()).cast(field.type), n)
        if constant is None:
            return pa.nulls(n, field.type)
        return pa.repeat(pa.scalar(constant, field.type), n)

    def _from_buyer_maker(self, array: pa.Array, lines: Lines) -> pa.Array:
        if not pa.types.is_boolean(array.type):
            text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(array, pa.string())))
            known = pc.is_in(text, pa.array(["true", "false", "1", "0"]))
            bad = pc.index(pc.invert(pc.fill_null(known, True)), True).as_py()
            if bad >= 0:
                raise RecordError(
                    f"is not true or false ({array[bad].as_py()!r})",
                    source=self.source,
                    line=int(lines[bad]),
                    field=self._buyer_maker,
                )
            array = pc.is_in(text, pa.array(["true", "1"]))
            array = pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()), array)
        return pc.if_else(array, "sell", "buy")


def _slices(
    nanos: npt.NDArray[np.int64], origin: int, quantum_ns: int
) -> Iterator[tuple[int, int]]:
    """``(first, end)`` row ranges that each span at most one pacing quantum."""
    buckets = (nanos - origin) // max(quantum_ns, 1)
    edges = np.flatnonzero(np.diff(buckets)) + 1
    bounds = [0, *edges.tolist(), len(nanos)]
    yield from itertools.pairwise(bounds)


def _concat(parts: list[tuple[pa.Table, Lines]]) -> tuple[pa.Table, Lines]:
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables([t for t, _ in parts]), np.concatenate([lines for _, lines in parts])


def _all_null(table: pa.Table) -> pa.ChunkedArray | None:
    """Rows whose every column is empty (blank lines), or None when there are none."""
    if table.num_columns == 0:
        return None
    mask = pc.is_null(table.column(0))
    for index in range(1, table.num_columns):
        mask = pc.and_(mask, pc.is_null(table.column(index)))
    return mask if pc.any(mask).as_py() else None


def _open_text(path: Path, raw: IO[bytes] | None = None) -> IO[str]:
    """The text of ``path`` (decompressed when it ends in .gz), read from ``raw`` when given
    (the open file, whose position tells how much was read)."""
    if path.suffix.lower() in {".gz", ".gzip"}:
        source = gzip.GzipFile(fileobj=raw) if raw is not None else gzip.open(path, "rb")  # noqa: SIM115 - the wrapper owns it
        return io.TextIOWrapper(source, encoding="utf-8-sig")
    if raw is not None:
        return io.TextIOWrapper(raw, encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


_CODECS: Final = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}
"""The compression pyarrow's ``compression="detect"`` reads from a path's extension."""


def _compression(path: Path) -> str | None:
    return _CODECS.get(path.suffix)


_CSV_NULLS: Final = ["", "null", "NULL"]
"""What a CSV field holds when its value is missing."""


def _csv_header(path: Path, delimiter: str) -> list[str] | None:
    """The column names of the first line; None for a file without text (zero bytes, or
    only blank lines, once decompressed): a file without records, like a header only."""
    if path.stat().st_size == 0:  # not even a gzip header: nothing to decompress
        return None
    with _open_text(path) as handle:
        first = handle.readline()
        names = next(csv.reader([first], delimiter=delimiter), [])
        if not names or not any(n.strip() for n in names):
            if all(not line.strip() for line in itertools.chain([first], handle)):
                return None
            raise RecordError("no header line (the first line names the columns)", source=str(path))
    return names

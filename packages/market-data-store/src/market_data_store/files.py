"""Read records from NDJSON, CSV or Parquet files, validated per row with file and line.

Columns / keys are the core model's field names (``Bar``: source, symbol, timeframe,
start, open, high, low, close, volume, trade_count, vwap). Empty CSV cells are missing
values. A bad row raises ``BadRecordError`` naming the file, line (or Parquet row) and field.

Files as vendors ship them load too: ``.gz`` NDJSON and CSV are read compressed; fields a
file lacks take ``defaults`` (``mds ingest --source --symbol --timeframe``); a time column
named ``timestamp``, ``timestamp_utc`` or ``time`` is the record's time (``start`` of a
bar, ``ts`` of a tick); naive timestamps are read in ``timezone`` when one is given (else
refused, as the models refuse them).

``ReadProgress`` tells how far a read is through its file, from the file itself: the bytes
of a CSV or NDJSON file read so far (of the file on disk, gzipped or not) of its size, the
rows of a Parquet file of those its metadata counts.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ValidationError

from market_data_core import Bar, Quote, Signal, Trade, from_ns, parse_timestamp
from market_data_store.backends.base import Record
from market_data_store.exceptions import BadRecordError

__all__ = ["MODELS", "BadRecordError", "ReadProgress", "batches", "read_records", "write_bars"]

MODELS: dict[str, type[BaseModel]] = {
    "bars": Bar,
    "trades": Trade,
    "quotes": Quote,
    "signals": Signal,
}


class ReadProgress:
    """How far a ``read_records`` iteration is through its file (see the module's
    docstring): ``done`` of ``total`` ``unit``; ``total`` is ``None`` until the file is open."""

    def __init__(self) -> None:
        self.unit: Literal["bytes", "rows"] = "bytes"
        self.total: int | None = None
        self.finished = False
        self._raw: IO[bytes] | None = None
        self._rows = 0

    @property
    def done(self) -> int:
        if self.finished:
            return self.total or 0
        if self.unit == "rows":
            return self._rows
        try:
            return 0 if self._raw is None else min(self._raw.tell(), self.total or 0)
        except ValueError:  # closed meanwhile (a display reads it from its own thread)
            return self.total or 0

    @property
    def fraction(self) -> float | None:
        if self.total is None:
            return None
        return 1.0 if self.total <= 0 else min(self.done / self.total, 1.0)

    def _reading(self, raw: IO[bytes]) -> None:
        import os  # noqa: PLC0415

        self._raw, self.unit, self.total = raw, "bytes", os.fstat(raw.fileno()).st_size


_TIME_ALIASES = ("timestamp", "timestamp_utc", "time", "datetime")


def read_records(
    path: Path,
    table: str,
    *,
    defaults: dict[str, Any] | None = None,
    timezone: str | None = None,
    progress: ReadProgress | None = None,
) -> Iterator[Record]:
    """Records of ``table`` from ``path`` (format by suffix: .ndjson/.jsonl, .csv, .parquet,
    each of the first two optionally .gz); see the module docstring for ``defaults`` and
    ``timezone``; ``progress``, when given, follows the read."""
    model = MODELS[table]
    time_field = "start" if table == "bars" else "ts"
    zone = _zone(timezone)
    for where, row in _rows(path, progress or ReadProgress()):
        if defaults:
            for key, value in defaults.items():
                row.setdefault(key, value)
        if time_field not in row:
            alias = next((name for name in _TIME_ALIASES if name in row), None)
            if alias is not None:
                row[time_field] = row.pop(alias)
        if zone is not None and isinstance(row.get(time_field), str):
            row[time_field] = _aware(row[time_field], zone)
        try:
            yield model.model_validate(row)  # type: ignore[misc]
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "record"
            msg = f"{where}: field {field}: {first['msg']}"
            raise BadRecordError(msg) from exc
    if progress is not None:
        progress.finished = True


def _zone(name: str | None) -> Any:
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"unknown timezone {name!r} (an IANA name such as UTC or America/New_York)"
        raise BadRecordError(msg) from None


def _aware(text: str, zone: Any) -> Any:
    try:
        value = parse_timestamp(text)  # to the nanosecond
    except ValueError:
        return text  # the model names what is wrong with it
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _rows(path: Path, progress: ReadProgress) -> Iterator[tuple[str, dict[str, Any]]]:
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = (suffixes[-2] if len(suffixes) > 1 else "") if compressed else path.suffix.lower()
    rows: Iterator[tuple[str, dict[str, Any]]]
    if suffix in {".ndjson", ".jsonl", ".json"}:
        rows = _ndjson(path, compressed, progress)
    elif suffix == ".csv":
        rows = _csv(path, compressed, progress)
    elif suffix == ".parquet" and not compressed:
        rows = _parquet(path, progress)
    else:
        msg = (
            f"{path}: unknown format {''.join(path.suffixes)!r}; use .ndjson, .jsonl, .csv"
            " (each also .gz) or .parquet"
        )
        raise BadRecordError(msg)
    return rows


def _text(raw: IO[bytes], compressed: bool) -> io.TextIOWrapper:
    """The text read from ``raw`` (the file on disk, whose position is the progress)."""
    if compressed:
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", newline="")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while batch := list(islice(records, size)):
        yield batch


def _ndjson(
    path: Path, compressed: bool, progress: ReadProgress
) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as raw, _text(raw, compressed) as handle:
        progress._reading(raw)
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                msg = f"{path}:{number}: not JSON: {exc.msg}"
                raise BadRecordError(msg) from exc
            if not isinstance(value, dict):
                msg = f"{path}:{number}: expected a JSON object, got {type(value).__name__}"
                raise BadRecordError(msg)
            yield f"{path}:{number}", value


def _csv(
    path: Path, compressed: bool, progress: ReadProgress
) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as raw, _text(raw, compressed) as handle:
        progress._reading(raw)
        reader = csv.DictReader(handle)
        for row in reader:
            values = {key: value for key, value in row.items() if value not in ("", None)}
            yield f"{path}:{reader.line_num}", values


def _parquet(path: Path, progress: ReadProgress) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415 - optional extra
    except ImportError as exc:  # pragma: no cover - depends on extras
        msg = "Parquet needs pyarrow: pip install 'market-data-store[parquet]'"
        raise BadRecordError(msg) from exc
    number = 0
    file = pq.ParquetFile(path)
    progress.unit, progress.total = "rows", file.metadata.num_rows
    for batch in file.iter_batches(batch_size=10_000):
        for row in _exact_rows(batch):
            number += 1
            progress._rows = number
            yield f"{path}:row {number}", {k: v for k, v in row.items() if v is not None}


def _exact_rows(batch: Any) -> list[dict[str, Any]]:
    """A record batch's rows, timestamps to the nanosecond (``to_pylist`` would give
    microseconds, or pandas' type)."""
    import pyarrow as pa  # noqa: PLC0415

    columns: dict[str, list[Any]] = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            nanos = column.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_pylist()
            columns[name] = [None if n is None else from_ns(n) for n in nanos]
        else:
            columns[name] = column.to_pylist()
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def write_bars(path: Path, bars: Sequence[Bar]) -> None:
    """Bars to NDJSON (``.ndjson``/``.jsonl``) or CSV, in the format ``read_records`` reads."""
    if path.suffix.lower() == ".csv":
        columns = list(Bar.model_fields)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for bar in bars:
                row = bar.model_dump(mode="json")
                writer.writerow({k: "" if row[k] is None else row[k] for k in columns})
        return
    with path.open("w", encoding="utf-8") as handle:
        handle.writelines(bar.model_dump_json() + "\n" for bar in bars)

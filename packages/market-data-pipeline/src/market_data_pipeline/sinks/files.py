"""Write batches to a Parquet, CSV or NDJSON file, atomically.

Rows are written incrementally (Parquet row groups, CSV blocks, NDJSON lines) to a hidden
temporary file next to the target; ``flush`` (end of input) syncs it and renames it over
the target in one step. A run that fails or is cancelled never leaves a half-written
file: ``close`` without ``flush`` discards the temporary file and leaves the target as it
was, with a warning naming it (a file there is an earlier run's; the run's error and exit
status say it failed). Parent directories are created. A run without rows writes an empty
file of the columns that would have come (the graph tells them: a provider's ``kind``, a
resampler's bars; else the sink's ``kind`` param), so a reader never takes a previous
run's file for this one's; when nothing tells them, the previous file is removed and the
node fails, naming what to set.

CSV cannot hold lists: list columns (trade ``conditions``) are written as JSON text, which
the ``replay`` provider reads back. Timestamps are ISO 8601 in UTC in CSV and NDJSON, with
six fractional digits, or nine when a value is not a whole microsecond
(``2024-01-02T14:30:00.123456789Z``): the ``replay`` provider reads back the exact
nanoseconds. Parquet keeps ``timestamp[ns, UTC]`` as it is.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, ClassVar, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import structlog
from pydantic import Field

from market_data_pipeline import records
from market_data_pipeline.components import Params, SinkComponent

__all__ = ["FileSink", "FileSinkParams", "detect_format", "iso_text", "ndjson_lines"]

logger = structlog.get_logger(__name__)

FileFormat = Literal["parquet", "csv", "ndjson"]
_EXTENSIONS: dict[str, FileFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
_ISO = "%Y-%m-%dT%H:%M:%S"


def detect_format(path: str | Path) -> FileFormat:
    """The format from the file's extension."""
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        known = ", ".join(sorted(_EXTENSIONS))
        msg = f"cannot tell the format of {str(path)!r} ({known}): set format: parquet|csv|ndjson"
        raise ValueError(msg)
    return found


class FileSinkParams(Params):
    path: str = Field(min_length=1)
    format: Literal["auto", "parquet", "csv", "ndjson"] = "auto"
    compression: str | None = Field(
        default=None, description="Parquet codec (default snappy): zstd, gzip, none..."
    )
    kind: Literal["trades", "quotes", "bars", "signals"] | None = Field(
        default=None,
        description=(
            "The records' kind, for the columns of an empty file when no row came and the"
            " graph does not tell them (after a map or a redis_stream)."
        ),
    )


class _Writer(Protocol):
    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


class FileSink(SinkComponent[FileSinkParams]):
    """Writes every batch to one Parquet, CSV or NDJSON file (atomic rename at the end)."""

    Params = FileSinkParams
    description: ClassVar[str] = "Writes batches to a Parquet / CSV / NDJSON file (atomically)."

    def __init__(self, node_id: str, params: FileSinkParams) -> None:
        super().__init__(node_id, params)
        self.path = Path(params.path)
        self.format: FileFormat = (
            detect_format(self.path) if params.format == "auto" else params.format
        )
        self.rows = 0
        self._tmp: Path | None = None
        self._writer: _Writer | None = None
        self._done = False

    async def write(self, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        if self._writer is None:
            self._writer = self._open(batch.schema)
        self._writer.write(batch)
        self.rows += batch.num_rows
        self.context.count("written", batch.num_rows)

    def _open(self, schema: pa.Schema) -> _Writer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp")
        if self.format == "parquet":
            return _ParquetWriter(self._tmp, schema, self.params.compression)
        if self.format == "csv":
            return _CsvWriter(self._tmp, schema)
        return _NdjsonWriter(self._tmp)

    async def flush(self) -> None:
        """Finish the file and move it into place."""
        if self._writer is None:
            self._writer = self._open(self._empty_schema())
            logger.info("file sink received no rows: an empty file", path=str(self.path))
        writer, tmp = self._writer, self._tmp
        assert tmp is not None
        self._writer = self._tmp = None
        writer.close()
        _fsync(tmp)
        tmp.replace(self.path)
        self._done = True
        _fsync_dir(self.path.parent)
        logger.info("file written", path=str(self.path), rows=self.rows, format=self.format)

    def _empty_schema(self) -> pa.Schema:
        """The columns of a file without rows: the sink's ``kind``, else what the graph
        says reaches the sink; neither: the stale file goes and the node fails."""
        if self.params.kind is not None:
            return records.schema_of(self.params.kind)
        if self.context.schema is not None:
            return self.context.schema
        stale = self.path.exists()
        self.path.unlink(missing_ok=True)
        msg = (
            "no rows came and the graph does not tell their columns (a map or a redis_stream"
            " upstream): set kind (trades, quotes, bars or signals) to write an empty file"
        )
        if stale:
            msg += f"; the previous {self.path} was removed, so that no reader takes it"
        raise ValueError(msg)

    async def close(self) -> None:
        writer, tmp = self._writer, self._tmp
        self._writer = self._tmp = None
        try:
            if writer is not None:
                writer.close()
            if not self._done:  # the run failed or was cancelled: say whose file is there
                logger.warning(
                    "file sink did not finish: the file there is an earlier run's, kept as it was"
                    if self.path.exists()
                    else "file sink did not finish: no file written",
                    path=str(self.path),
                    discarded=self.rows,
                )
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            await super().close()


class _ParquetWriter:
    def __init__(self, path: Path, schema: pa.Schema, compression: str | None) -> None:
        self.schema = schema
        self._writer = pq.ParquetWriter(str(path), schema, compression=compression or "snappy")

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(_conform(table, self.schema))

    def close(self) -> None:
        self._writer.close()


class _CsvWriter:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pacsv.CSVWriter(self._sink, _csv_schema(schema))

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(_for_csv(_conform(table, self.schema)))

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            self._sink.close()


class _NdjsonWriter:
    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("w", encoding="utf-8")

    def write(self, table: pa.Table) -> None:
        self._file.writelines(line + "\n" for line in ndjson_lines(table))

    def close(self) -> None:
        self._file.close()


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.equals(schema, check_metadata=False):
        return table
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, ValueError) as error:
        msg = f"a batch does not match the file's schema ({schema}): {error}"
        raise ValueError(msg) from None


def _is_list(kind: pa.DataType) -> bool:
    return bool(pa.types.is_list(kind) or pa.types.is_large_list(kind))


def _as_text(kind: pa.DataType) -> bool:
    """Whether CSV holds a column of this type as text of our own (lists, timestamps)."""
    return _is_list(kind) or pa.types.is_timestamp(kind)


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [pa.field(f.name, pa.string()) if _as_text(f.type) else f for f in schema],
        metadata=schema.metadata,
    )


def _for_csv(table: pa.Table) -> pa.Table:
    for index, field in enumerate(table.schema):
        if _is_list(field.type):
            text = [None if v is None else json.dumps(v) for v in table.column(index).to_pylist()]
            table = table.set_column(
                index, pa.field(field.name, pa.string()), pa.array(text, pa.string())
            )
        elif pa.types.is_timestamp(field.type):
            table = table.set_column(
                index, pa.field(field.name, pa.string()), iso_text(table.column(index))
            )
    return table


def ndjson_lines(table: pa.Table) -> Iterator[str]:
    """One JSON object per row; timestamps as ISO 8601 strings (``Z`` for UTC; nine
    fractional digits where a value is not a whole microsecond)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            table = table.set_column(
                index, pa.field(field.name, pa.string()), iso_text(table.column(index))
            )
    for row in table.to_pylist():
        yield json.dumps(row, separators=(",", ":"), default=str)


def iso_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO 8601 text of a timestamp column: six fractional digits (the unit's own below
    microseconds), nine where a nanosecond value is not a whole microsecond."""
    kind = column.type
    form = _ISO if kind.tz is None else _ISO + "Z"
    if kind.tz is not None:
        column = column.cast(pa.timestamp(kind.unit, tz="UTC"))
    if kind.unit != "ns":
        return pc.strftime(column, format=form)
    micros_type = pa.timestamp("us", tz=column.type.tz)
    micros = pc.strftime(pc.cast(column, micros_type, safe=False), format=form)
    nanos = pc.cast(column, pa.int64())
    whole = pc.equal(pc.multiply(pc.divide(nanos, 1000), 1000), nanos)
    return pc.if_else(pc.fill_null(whole, True), micros, pc.strftime(column, format=form))


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Bulk reads: ``GET /v1/read/{kind}`` streams bars, trades or quotes of any size.

Many symbols (``symbol`` repeated; none: every symbol), a range [start, end) exact to the
nanosecond, ``as_known_at``, as an Arrow IPC stream (the default), Parquet or CSV. No page
cap: the rows stream from the database a batch at a time (``market_data_store.read``), each
encoded and sent before the next is read, so the service's memory does not grow with the
answer. A query the store cannot answer is a 4xx before the first byte; the first batch is
read before the status is sent, so a database that fails answers 503, not a truncated 200.
A failure after that cuts the response short (no final chunk): clients see an incomplete
body, never a short answer that looks whole.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Generator
from typing import Annotated, Literal

import pyarrow as pa
from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from market_data_core import Symbol
from market_data_core.columns import SCHEMAS
from market_data_core.serving import strict_json_route
from market_data_store.backends._layout import json_lists
from market_data_store.read.query import ReadQuery, check_known_at
from market_data_store.read.sources import Source, open_source
from market_data_store.service.deps import State
from market_data_store.service.query import MEDIA, KnownAt, RangeTime

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["query"], route_class=strict_json_route())

BulkFormat = Annotated[Literal["arrow", "parquet", "csv"], Query()]


@router.get(
    "/read/{kind}",
    summary="Bars, trades or quotes of many symbols in [start, end), streamed whole",
    response_class=StreamingResponse,
    responses={200: {"content": {media: {} for media in MEDIA.values()}}},
)
async def read(
    state: State,
    kind: Annotated[Literal["bars", "trades", "quotes"], Path()],
    symbol: Annotated[
        list[Symbol] | None,
        Query(max_length=1000, description="Repeat for several; none: every symbol."),
    ] = None,
    start: RangeTime | None = None,
    end: RangeTime | None = None,
    timeframe: Annotated[str | None, Query(max_length=8, examples=["1m"])] = None,
    source: Annotated[str | None, Query(max_length=128)] = None,
    as_known_at: KnownAt = None,
    format: BulkFormat = "arrow",
) -> StreamingResponse:
    known = check_known_at(as_known_at, state.settings.history_retention_days)
    query = ReadQuery.of(
        kind, symbol, start, end, timeframe=timeframe, source=source, as_known_at=known,
    )  # fmt: skip
    reader = _source(state)
    batches = reader.batches(query)
    first = await _next(batches)  # a failure here is an error answer, not a cut stream
    return StreamingResponse(
        _encoded(first, batches, query, format),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{kind}.{_SUFFIX[format]}"'},
    )


_SUFFIX = {"arrow": "arrows", "parquet": "parquet", "csv": "csv"}


def _source(state: State) -> Source:
    """The service's reader of its own database (made once, on the first read)."""
    if state.reads is None:
        state.reads = open_source(state.settings.database.secret())
    return state.reads


async def _next(batches: Generator[pa.RecordBatch, None, None]) -> pa.RecordBatch | None:
    """The next batch, read in a thread (the database's work leaves the loop free)."""
    return await asyncio.to_thread(next, batches, None)


async def _encoded(
    first: pa.RecordBatch | None,
    batches: Generator[pa.RecordBatch, None, None],
    query: ReadQuery,
    form: str,
) -> AsyncIterator[bytes]:
    sink = io.BytesIO()
    writer = _Writer(sink, SCHEMAS[query.kind], form)
    batch = first
    try:
        while batch is not None:
            writer.write(batch)
            if sink.tell():
                yield _take(sink)
            batch = await _next(batches)
        writer.close()
        yield _take(sink)
    finally:
        await asyncio.to_thread(batches.close)


def _take(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


class _Writer:
    """An Arrow IPC stream, Parquet file (a row group per batch) or CSV, written batch by
    batch (CSV: a trade's conditions as JSON text)."""

    def __init__(self, sink: io.BytesIO, schema: pa.Schema, form: str) -> None:
        self.form = form
        if form == "arrow":
            self._writer = pa.ipc.new_stream(sink, schema)
        elif form == "parquet":
            import pyarrow.parquet as pq  # noqa: PLC0415

            self._writer = pq.ParquetWriter(sink, schema)
        else:
            from pyarrow import csv  # noqa: PLC0415

            self._writer = csv.CSVWriter(sink, _csv_schema(schema))

    def write(self, batch: pa.RecordBatch) -> None:
        if self.form == "csv" and "conditions" in batch.schema.names:
            index = batch.schema.get_field_index("conditions")
            batch = batch.set_column(index, "conditions", json_lists(batch.column(index)))
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    if "conditions" not in schema.names:
        return schema
    index = schema.get_field_index("conditions")
    return schema.set(index, pa.field("conditions", pa.string()))

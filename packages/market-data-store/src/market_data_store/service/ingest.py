"""``POST /v1/{bars,trades,quotes,signals}``: validated batches into the write coordinator.

- 202 with the number of records accepted. Under ``ack=durable`` (the default) 202 means
  every record of the request is in the database: nothing that was not stored is ever
  acknowledged.
- The body is a JSON array of records (``application/json``) or an Arrow IPC stream
  (``application/vnd.apache.arrow.stream``) of a table with the kind's columns (see
  ``market_data_store.columnar``): an Arrow body is checked column by column and goes to
  the database as columns, never as a model per row.
- 413 when the body or the batch is too large (the batch size is checked while the array
  is read, before its items are validated), or when the body would decode to more than
  ``max_decoded_bytes`` (an Arrow body's row count and uncompressed buffers are read from
  its metadata before anything is decompressed: a compression bomb costs nothing); 503
  with ``Retry-After`` when the bodies being decoded at once would pass
  ``max_decoding_bytes``. Large bodies are decoded off the event loop.
- 415 when the body is neither JSON nor Arrow, or JSON declared in a charset other than
  UTF-8; 422 when a JSON object has a key twice (which one counts would be a guess); 422
  naming the item index (the row of an Arrow table) and field (its column) when a record
  is invalid (nothing of that batch is accepted; at most ``MAX_ERRORS`` errors are
  listed), and 422
  naming the records the database refused (the request's other records were stored).
- 429 with ``Retry-After`` under hard backpressure; 503 with ``Retry-After`` while the
  store is not accepting writes (stopping, circuit breaker open), or when records of the
  request could not be stored (dead-lettered by a stop during an outage): retry it, the
  writes are idempotent.
- ``Idempotency-Key``: a retry with the same key and body to the same route returns the
  first answer (each route has its own keys).
"""

from __future__ import annotations

import asyncio
import math
from functools import cache
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from market_data_core import BackpressureLevel, Bar, Quote, Signal, Trade
from market_data_core.ipc import measure
from market_data_core.serving import DuplicateKeyError, json_charset_refusal, strict_json
from market_data_store.backends.base import Record
from market_data_store.columnar import ArrowRecords, ColumnError, Kind, conform
from market_data_store.exceptions import (
    CircuitOpenError,
    CoordinatorStoppedError,
    QueueFullError,
)
from market_data_store.receipts import WriteReceipt
from market_data_store.service.deps import ServiceState, State
from market_data_store.service.idempotency import KeyReusedError
from market_data_store.service.problems import Problem, problem, validation_errors

__all__ = ["MAX_ERRORS", "IngestAccepted", "router"]

router = APIRouter(prefix="/v1", tags=["ingest"])
_MODELS: dict[str, type[BaseModel]] = {
    "bars": Bar,
    "trades": Trade,
    "quotes": Quote,
    "signals": Signal,
}
MAX_ERRORS = 50
"""Most validation errors one 422 lists (the total is in ``detail``)."""
_THREAD_ABOVE = 256 * 1024
"""Bodies that decode to more than this (bytes) are validated in a thread: the event loop
keeps serving (/healthz, /readyz, other requests) meanwhile."""
_JSON_EXPANSION = 4
"""What a JSON body is taken to decode to, in times its length (for the decoding limits)."""
ARROW_STREAM = "application/vnd.apache.arrow.stream"
_ACCEPTED_TYPES = f"application/json (a JSON array of records) or {ARROW_STREAM}"


class IngestAccepted(BaseModel):
    accepted: int
    table: str
    durable: bool
    """True when the records were written before the answer."""


@cache
def _adapter(table: str, max_batch: int) -> TypeAdapter[list[Any]]:
    """``list[Model]`` of at most ``max_batch`` items: pydantic stops at the first item past
    the limit, so an oversized batch costs no more than the limit to refuse."""
    model = _MODELS[table]
    batch: Any = Annotated[list[model], Field(max_length=max_batch)]  # type: ignore[valid-type]
    return TypeAdapter(batch)


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _validate_arrow(table: str, body: bytes, max_batch: int) -> ArrowRecords | JSONResponse:
    """The Arrow IPC stream's table, conformed to ``table``'s schema, or the 413/422
    answer naming the row and column."""
    kind = Kind(table)
    try:
        reader = pa.ipc.open_stream(body)
        batches = []
        rows = 0
        for batch in reader:
            rows += batch.num_rows
            if rows > max_batch:
                return problem(413, f"a batch holds at most {max_batch} records (max_batch)")
            batches.append(batch)
        data = pa.Table.from_batches(batches, schema=reader.schema)
        data.validate(full=True)
    except (pa.ArrowException, ValueError, OSError) as exc:
        detail = f"the body is not a valid Arrow IPC stream: {str(exc).splitlines()[0][:200]}"
        return problem(422, detail)
    try:
        conformed = conform(data, kind)
    except ColumnError as exc:
        loc: list[str | int] = [exc.row] if exc.row is not None else []
        if exc.column is not None:
            loc.append(exc.column)
        errors = [{"loc": loc, "msg": exc.reason, "type": "value_error"}]
        return problem(422, f"invalid {table} table: {exc}", errors=errors)
    return ArrowRecords(kind, conformed)


def _validate(table: str, body: bytes, max_batch: int) -> list[Record] | JSONResponse:
    """The batch's records, or the 413/422 answer. JSON types are strict: ``"10"`` or
    ``true`` is not a number."""
    try:
        records: list[Record] = _adapter(table, max_batch).validate_json(body, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(error["type"] == "too_long" and not error["loc"] for error in errors):
            return problem(413, f"a batch holds at most {max_batch} records (max_batch)")
        total = exc.error_count()
        listed = f"; the first {MAX_ERRORS} are listed" if total > MAX_ERRORS else ""
        detail = f"invalid {table} batch: {total} errors{listed}"
        return problem(422, detail, errors=validation_errors(errors[:MAX_ERRORS]))
    try:
        strict_json(body)  # valid JSON: now refuse an object with a key twice
    except DuplicateKeyError as exc:
        duplicate = [{"loc": list(exc.loc), "msg": exc.msg, "type": "duplicate_key"}]
        return problem(422, f"invalid {table} batch: {exc.msg}", errors=duplicate)
    return records


def _seconds(wait: float) -> int:
    return max(1, min(math.ceil(wait), 30))


def _not_stored(state: ServiceState, table: str, receipt: WriteReceipt) -> JSONResponse:
    """What a durable ingest answers when some of its records are not in the database."""
    if receipt.refused:
        state.metrics.rejected.labels("refused").inc()
        errors = [
            {"loc": [refused.index], "msg": refused.reason, "type": "refused_by_database"}
            for refused in receipt.refused[:MAX_ERRORS]
        ]
        detail = (
            f"the database refused {len(receipt.refused)} of {receipt.total} {table} records"
            f" (listed by index); {receipt.written} were stored"
        )
        return problem(422, detail, errors=errors)
    state.metrics.rejected.labels("not_stored").inc()
    missing = receipt.total - receipt.written
    detail = (
        f"{missing} of {receipt.total} {table} records were not stored"
        f" ({receipt.dead_lettered} kept in the dead-letter file): retry the request"
        " (writes are idempotent)"
    )
    return problem(503, detail, retry_after=2)


async def _ingest(
    state: ServiceState, request: Request, table: str, key: str | None
) -> JSONResponse:
    body = await _body(state, request)
    if isinstance(body, JSONResponse):
        return body
    scoped = None if key is None else f"{table}:{key}"
    digest = state.idempotency.digest(table, body)
    early = _replayed(state, scoped, digest) or _refused_now(state)
    if early is not None:
        return early
    arrow = _media(request.headers.get("content-type")) == ARROW_STREAM
    cost = await _arrow_cost(state, body) if arrow else len(body) * _JSON_EXPANSION
    if isinstance(cost, JSONResponse):
        return cost
    busy = _over_budget(state, cost)
    if busy is not None:
        return busy
    validated = await _decode(state, table, body, arrow, cost)
    if isinstance(validated, JSONResponse):
        reason = "batch_too_large" if validated.status_code == 413 else "invalid"
        state.metrics.rejected.labels(reason).inc()
        return validated
    return await _write(state, table, validated, scoped, digest)


async def _arrow_cost(state: ServiceState, body: bytes) -> int | JSONResponse:
    """What an Arrow body decodes to (bytes), read from its metadata alone, or the 413/422
    answer: too many rows, too many bytes, not an Arrow stream."""
    settings = state.settings
    try:
        if len(body) > _THREAD_ABOVE:
            extent = await asyncio.to_thread(measure, body)
        else:
            extent = measure(body)
    except ValueError as exc:
        state.metrics.rejected.labels("invalid").inc()
        return problem(422, f"the body is not a valid Arrow IPC stream: {exc}")
    if extent.rows > settings.max_batch:
        state.metrics.rejected.labels("batch_too_large").inc()
        return problem(413, f"a batch holds at most {settings.max_batch} records (max_batch)")
    if extent.decoded_bytes > settings.max_decoded_bytes:
        state.metrics.rejected.labels("too_large_decoded").inc()
        detail = (
            f"the body decodes to {extent.decoded_bytes} bytes, more than"
            f" {settings.max_decoded_bytes} (max_decoded_bytes)"
        )
        return problem(413, detail)
    return extent.decoded_bytes


def _over_budget(state: ServiceState, cost: int) -> JSONResponse | None:
    """503 when the bodies being decoded at once would pass ``max_decoding_bytes`` (a body
    alone is always decoded); else ``None``."""
    settings = state.settings
    if state.decoding and state.decoding + cost > settings.max_decoding_bytes:
        state.metrics.rejected.labels("decoding_busy").inc()
        return problem(503, "too many bodies being decoded at once: retry", retry_after=1)
    return None


async def _decode(
    state: ServiceState, table: str, body: bytes, arrow: bool, cost: int
) -> list[Record] | ArrowRecords | JSONResponse:
    """The body's records (or the 413/422 answer), its ``cost`` counted in the bytes being
    decoded meanwhile; off the event loop when large."""
    validate = _validate_arrow if arrow else _validate
    state.decoding += cost
    try:
        if cost > _THREAD_ABOVE:
            return await asyncio.to_thread(validate, table, body, state.settings.max_batch)
        return validate(table, body, state.settings.max_batch)
    finally:
        state.decoding -= cost


async def _body(state: ServiceState, request: Request) -> bytes | JSONResponse:
    """The request body, or the 415 answer."""
    content_type = request.headers.get("content-type")
    if not (_is_json(content_type) or _media(content_type) == ARROW_STREAM):
        state.metrics.rejected.labels("content_type").inc()
        return problem(415, f"the body must be {_ACCEPTED_TYPES}")
    refusal = json_charset_refusal(content_type) if _is_json(content_type) else None
    if refusal is not None:
        state.metrics.rejected.labels("content_type").inc()
        return problem(415, refusal)
    return await request.body()  # at most max_body_bytes: the route's max_body_size


def _replayed(state: ServiceState, scoped: str | None, digest: str) -> JSONResponse | None:
    """The first answer to this ``Idempotency-Key`` (422 if it came with another body)."""
    if scoped is None:
        return None
    try:
        cached = state.idempotency.get(scoped, digest)
    except KeyReusedError as exc:
        return problem(422, str(exc))
    if cached is None:
        return None
    return JSONResponse(cached[1], status_code=cached[0], headers={"Idempotent-Replay": "true"})


def _refused_now(state: ServiceState) -> JSONResponse | None:
    """429 under hard backpressure, 503 while writes are refused; else ``None``."""
    if state.store.level is BackpressureLevel.HARD:
        state.metrics.rejected.labels("backpressure").inc()
        return problem(429, "store under hard backpressure: retry later", retry_after=1)
    reason = state.store.unavailable()
    if reason is None:
        return None
    state.metrics.rejected.labels("unavailable").inc()
    wait = state.store.coordinator.breaker.retry_after()
    return problem(503, f"store not accepting writes: {reason}", retry_after=_seconds(wait))


async def _write(
    state: ServiceState,
    table: str,
    records: list[Record] | ArrowRecords,
    scoped: str | None,
    digest: str,
) -> JSONResponse:
    try:
        receipt = await state.store.submit_many(records)
    except QueueFullError:
        state.metrics.rejected.labels("queue_full").inc()
        return problem(429, "write queue full: retry later", retry_after=1)
    except (CoordinatorStoppedError, CircuitOpenError) as exc:
        state.metrics.rejected.labels("unavailable").inc()
        return problem(503, f"store not accepting writes: {type(exc).__name__}", retry_after=2)
    state.metrics.records.labels(table).inc(receipt.total)
    durable = state.settings.ack == "durable"
    if durable:
        with state.store.coordinator.hurried():  # no lingering while a caller waits
            await receipt.wait()
        if not receipt.stored:
            return _not_stored(state, table, receipt)
    answer = IngestAccepted(accepted=receipt.total, table=table, durable=durable).model_dump()
    if scoped is not None:
        state.idempotency.put(scoped, digest, 202, answer)
    return JSONResponse(answer, status_code=202)


def _route(table: str) -> None:
    model = _MODELS[table]

    async def ingest(
        state: State,
        request: Request,
        idempotency_key: str | None = Header(default=None, max_length=200),
    ) -> JSONResponse:
        return await _ingest(state, request, table, idempotency_key)

    ingest.__name__ = f"ingest_{table}"
    router.add_api_route(
        f"/{table}",
        ingest,
        methods=["POST"],
        status_code=202,
        summary=f"Ingest a batch of {table}",
        description=(
            f"Body: a JSON array of `{model.__name__}` (see docs/contracts/), strict JSON"
            f" types, or an Arrow IPC stream (`{ARROW_STREAM}`) of a table with the"
            " columns of `market_data_store.columnar`. Under `ack=durable` a 202 means"
            " every record is in the database."
        ),
        response_model=IngestAccepted,
        responses={
            413: {"model": Problem, "description": "body or batch too large"},
            415: {"model": Problem, "description": "the body is neither JSON nor Arrow"},
            422: {
                "model": Problem,
                "description": "invalid records, or records the database refused (index named)",
            },
            429: {"model": Problem, "description": "hard backpressure (Retry-After)"},
            503: {
                "model": Problem,
                "description": "not accepting writes, or records not stored (Retry-After)",
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "items": {"$ref": f"#/components/schemas/{model.__name__}"},
                        }
                    },
                    ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )


for _table in _MODELS:
    _route(_table)

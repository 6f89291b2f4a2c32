"""``POST /v1/{bars,trades,quotes,signals}``: validated batches into the write coordinator.

- 202 with the number of records accepted; accepted records are written, dead-lettered, or
  (only under an overflow strategy the operator chose) counted as dropped.
- 413 when the body or the batch is too large; 422 naming the item index and field when a
  record is invalid (nothing of that batch is accepted).
- 429 with ``Retry-After`` under hard backpressure; 503 with ``Retry-After`` while the
  store is not accepting writes.
- ``Idempotency-Key``: a retry with the same key and body returns the first answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from market_data_core import BackpressureLevel, Bar, Quote, Signal, Trade
from market_data_store.exceptions import (
    CircuitOpenError,
    CoordinatorStoppedError,
    QueueFullError,
)
from market_data_store.service.deps import ServiceState, State
from market_data_store.service.idempotency import KeyReusedError
from market_data_store.service.problems import Problem, problem, validation_errors

__all__ = ["IngestAccepted", "router"]

router = APIRouter(prefix="/v1", tags=["ingest"])
_ADAPTERS: dict[str, TypeAdapter[list[Any]]] = {
    "bars": TypeAdapter(list[Bar]),
    "trades": TypeAdapter(list[Trade]),
    "quotes": TypeAdapter(list[Quote]),
    "signals": TypeAdapter(list[Signal]),
}
_MODELS: dict[str, type[BaseModel]] = {
    "bars": Bar,
    "trades": Trade,
    "quotes": Quote,
    "signals": Signal,
}


class IngestAccepted(BaseModel):
    accepted: int
    table: str
    durable: bool
    """True when the records were written (or dead-lettered) before the answer."""


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _ingest(  # noqa: PLR0911 - one return per HTTP outcome, in order
    state: ServiceState, request: Request, table: str, key: str | None
) -> JSONResponse:
    settings = state.settings
    body = await _read_body(request, settings.max_body_bytes)
    if body is None:
        state.metrics.rejected.labels("body_too_large").inc()
        return problem(413, f"request body exceeds {settings.max_body_bytes} bytes")
    digest = state.idempotency.digest(table, body)
    if key is not None:
        try:
            cached = state.idempotency.get(key, digest)
        except KeyReusedError as exc:
            return problem(422, str(exc))
        if cached is not None:
            return JSONResponse(
                cached[1], status_code=cached[0], headers={"Idempotent-Replay": "true"}
            )
    if state.store.level is BackpressureLevel.HARD:
        state.metrics.rejected.labels("backpressure").inc()
        return problem(429, "store under hard backpressure: retry later", retry_after=1)
    try:
        records = _ADAPTERS[table].validate_json(body)
    except ValidationError as exc:
        state.metrics.rejected.labels("invalid").inc()
        return problem(422, f"invalid {table} batch", errors=validation_errors(exc.errors()))
    if len(records) > settings.max_batch:
        state.metrics.rejected.labels("batch_too_large").inc()
        return problem(413, f"batch of {len(records)} exceeds max_batch {settings.max_batch}")
    try:
        accepted = await state.store.submit(records)
    except QueueFullError:
        state.metrics.rejected.labels("queue_full").inc()
        return problem(429, "write queue full: retry later", retry_after=1)
    except (CoordinatorStoppedError, CircuitOpenError) as exc:
        state.metrics.rejected.labels("unavailable").inc()
        return problem(503, f"store not accepting writes: {type(exc).__name__}", retry_after=2)
    durable = settings.ack == "durable"
    if durable:
        await state.store.flush()
    state.metrics.records.labels(table).inc(accepted)
    answer = IngestAccepted(accepted=accepted, table=table, durable=durable).model_dump()
    if key is not None:
        state.idempotency.put(key, digest, 202, answer)
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
        description=f"Body: a JSON array of `{model.__name__}` (see docs/contracts/).",
        response_model=IngestAccepted,
        responses={
            413: {"model": Problem, "description": "body or batch too large"},
            422: {"model": Problem, "description": "invalid records (index and field named)"},
            429: {"model": Problem, "description": "hard backpressure (Retry-After)"},
            503: {"model": Problem, "description": "not accepting writes (Retry-After)"},
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
                    }
                },
            }
        },
    )


for _table in _MODELS:
    _route(_table)

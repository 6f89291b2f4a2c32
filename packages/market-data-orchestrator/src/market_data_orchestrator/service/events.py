"""What operators follow: ``GET /v1/events`` (server-sent events: job state changes, the
store's view, its feedback), ``GET /v1/feedback`` (the latest per coordinator) and
``GET /v1/audit`` (admin: the audit records)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from market_data_core import AuditEnvelope, AuditOutcome
from market_data_orchestrator.event_feed import offer
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.service.access import ROLE, VIEWER, Admin, Viewer, audit_call
from market_data_orchestrator.watchers.feedback import unconfigured_snapshot

__all__ = ["add_event_routes"]


def add_event_routes(app: FastAPI, orchestrator: Orchestrator) -> None:
    """The event stream, the feedback snapshot and the audit records."""

    @app.get(
        "/v1/feedback",
        summary="Latest feedback per coordinator and rate per provider",
        responses=VIEWER,
    )
    async def feedback(_: Viewer) -> dict[str, Any]:
        if orchestrator.feedback is None:
            return unconfigured_snapshot()
        return orchestrator.feedback.snapshot()

    @app.get(
        "/v1/audit",
        response_model=list[AuditEnvelope],
        summary="Audit records (admin)",
        responses=ROLE,
    )
    async def audit(request: Request, principal: Admin, limit: int = 100) -> list[AuditEnvelope]:
        records = await orchestrator.audit.read(max(1, min(limit, 1000)))
        await audit_call(orchestrator, request, principal, AuditOutcome.ALLOWED)
        return records

    @app.get(
        "/v1/events",
        summary="Server-sent events: job state changes, the store's view, its feedback",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, **VIEWER},
    )
    async def events(_: Viewer) -> StreamingResponse:
        return StreamingResponse(_event_stream(orchestrator), media_type="text/event-stream")


async def _event_stream(orchestrator: Orchestrator) -> AsyncIterator[str]:
    """``state`` events from the supervisor and ``store``/``feedback`` events from the
    orchestrator's status feed (``market_data_orchestrator.event_feed``), as they come; the
    store's current view and the recent feedback first, so a page starts from them."""
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(maxsize=1000)

    async def pump(source: AsyncIterator[Any], kind: str | None) -> None:
        async for item in source:  # a slow reader loses the oldest
            offer(
                queue,
                (item.kind, item.data) if kind is None else (kind, item.model_dump(mode="json")),
            )
        offer(queue, None)

    pumps = [
        asyncio.create_task(pump(orchestrator.supervisor.events(), "state")),
        asyncio.create_task(pump(orchestrator.status.subscribe(), None)),
    ]
    try:
        yield ": connected\n\n"
        if (view := orchestrator.store_view()) is not None:
            yield f"event: store\ndata: {json.dumps(view)}\n\n"
        for past in orchestrator.status.recent_feedback():
            yield f"event: {past.kind}\ndata: {json.dumps(past.data)}\n\n"
        while (item := await queue.get()) is not None:  # None: a source ended (a stop)
            kind, data = item
            yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

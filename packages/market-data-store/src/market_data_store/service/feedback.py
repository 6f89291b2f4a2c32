"""Feedback for HTTP-only consumers: the latest event, and a server-sent events stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from market_data_core import FeedbackEvent
from market_data_core.serving import strict_json_route
from market_data_store.service.deps import State
from market_data_store.service.problems import Problem

__all__ = ["router"]

router = APIRouter(prefix="/v1/feedback", tags=["feedback"], route_class=strict_json_route())
KEEPALIVE_SECONDS = 15.0


@router.get(
    "",
    response_model=FeedbackEvent,
    summary="The write coordinator's latest event",
    responses={404: {"model": Problem, "description": "no feedback event yet"}},
)
async def latest(state: State) -> FeedbackEvent:
    event = state.store.latest_feedback()
    if event is None:
        raise HTTPException(404, "no feedback event yet")
    return event


@router.get(
    "/stream",
    summary="Server-sent events: every FeedbackEvent (event: feedback), from the latest on",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(state: State, request: Request) -> StreamingResponse:
    return StreamingResponse(
        _events(state, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(state: State, request: Request) -> AsyncIterator[str]:
    subscription = state.store.bus.subscribe(name="sse", queue_size=256)
    try:
        latest = state.store.latest_feedback()
        if latest is not None:
            yield _frame(latest)
        iterator = aiter(subscription)
        while not await request.is_disconnected():
            try:
                message = await asyncio.wait_for(anext(iterator), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            except StopAsyncIteration:
                return
            if isinstance(message, FeedbackEvent):
                yield _frame(message)
    finally:
        with contextlib.suppress(Exception):
            subscription.close()


def _frame(event: FeedbackEvent) -> str:
    return f"event: feedback\nid: {event.seq}\ndata: {event.model_dump_json()}\n\n"

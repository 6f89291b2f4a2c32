"""What every request goes through before a route sees it (a pure ASGI middleware):

- **Body size.** A body longer than the route's limit answers 413 before the route reads
  it: the ingest routes take ``max_body_bytes``, every other route ``max_request_bytes``. A
  declared ``Content-Length`` over the limit is refused at once; a body streamed without
  one is counted as it is read and refused once it passes the limit.
- **Methods.** ``OPTIONS`` on a path that exists answers 204 with ``Allow``; a 405 carries
  ``Allow`` with every method of the path (its routes may be several: ``GET /v1/bars`` and
  ``POST /v1/bars`` are two routes), as RFC 9110 asks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestGuard"]


class _TooLargeError(Exception):
    """The body passed its limit while the route read it."""


class RequestGuard:
    """See the module docstring. ``limit(path)`` is the body limit (bytes) of a path;
    ``routes()`` the application's routes (read per request: routes may be added later)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: Callable[[str], int],
        routes: Callable[[], Iterable[BaseRoute]],
    ) -> None:
        self.app = app
        self._limit = limit
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._options(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        started = False
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLargeError
            return message

        async def allowing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] == 405:
                    message = _with_allow(message, self._allowed(scope))
            await send(message)

        try:
            await self.app(scope, counted, allowing)
        except _TooLargeError:
            if started:
                raise
            await _too_large(send, limit)

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = self._allowed(scope)
        if not allowed:  # no such path: the router answers (404)
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [(b"allow", ", ".join(sorted(allowed)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def _allowed(self, scope: Scope) -> set[str]:
        """Every method the routes of this path take (OPTIONS, and HEAD with GET)."""
        methods: set[str] = set()
        for route in self._routes():
            match, _ = route.matches({**scope, "method": "GET"})
            if match is Match.NONE:
                continue
            methods |= getattr(route, "methods", None) or {"GET"}
        if methods:
            methods.add("OPTIONS")
            if "GET" in methods:
                methods.add("HEAD")
        return methods


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _with_allow(message: Message, allowed: set[str]) -> Message:
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(sorted(allowed)).encode()))
    return {**message, "headers": headers}


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body exceeds {limit} bytes", "errors": []}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""What the routes do not say themselves (a pure ASGI middleware, outermost but metrics):

- ``OPTIONS`` on a path that exists answers 204 with ``Allow``; a 405 carries ``Allow`` with
  every method of the path (its routes may be several: ``GET /v1/bars`` and
  ``POST /v1/bars`` are two routes), as RFC 9110 asks.
- A 413 of FastAPI's body limit (``max_body_size``: ``max_body_bytes`` on the ingest routes,
  ``max_request_bytes`` elsewhere; Starlette answers it in plain text) becomes the
  service's JSON error body, naming the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from market_data_store.service.problems import problem

__all__ = ["RequestGuard"]

HTTP_405, HTTP_413 = 405, 413


class RequestGuard:
    """See the module docstring. ``routes()`` lists the application's routes."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Callable[[], Iterable[BaseRoute]],
        on_too_large: Callable[[str], None] = lambda path: None,
    ) -> None:
        self.app = app
        self._routes = routes
        self._on_too_large = on_too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._options(scope, receive, send)
            return

        replaced = False

        async def answering(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                if message["status"] == HTTP_405:
                    message = _with_allow(message, self._allowed(scope))
                elif message["status"] == HTTP_413 and _is_plain_text(message):
                    replaced = True
                    self._on_too_large(scope["path"])
                    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
                    detail = f"request body exceeds {limit} bytes" if limit else "body too large"
                    await problem(HTTP_413, detail)(scope, receive, send)
                    return
            if not replaced:
                await send(message)

        await self.app(scope, receive, answering)

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


def _is_plain_text(message: Message) -> bool:
    types = [v for k, v in message.get("headers", []) if k.lower() == b"content-type"]
    return bool(types) and types[0].startswith(b"text/plain")


def _with_allow(message: Message, allowed: set[str]) -> Message:
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(sorted(allowed)).encode()))
    return {**message, "headers": headers}

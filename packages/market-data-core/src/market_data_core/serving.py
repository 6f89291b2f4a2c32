"""What the HTTP services (``mds serve``, ``mdo serve``) share about being served."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "DOCS_POLICY",
    "SecurityHeaders",
    "add_offline_docs",
    "add_security_headers",
    "forwarded",
    "query_names",
]


def forwarded(trusted: Sequence[IPv4Network | IPv6Network]) -> dict[str, Any]:
    """uvicorn's settings for forwarded headers: believed only from ``trusted`` proxies.
    uvicorn believes ``X-Forwarded-For`` from 127.0.0.1 by default (or what
    ``FORWARDED_ALLOW_IPS`` says), so any local caller could pick the client address that
    audit records and per-client rate limits use; with no proxy configured the headers are
    ignored and the address is the connection's peer."""
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": [str(n) for n in trusted]}


def query_names(route: object) -> frozenset[str]:
    """The query parameters a matched route declares (its dependencies' too): the ones
    whose values an access log may show (``market_data_core.logs.redacted_query``).
    Empty for anything that is not a FastAPI route (an unmatched path)."""
    known = _QUERY_NAMES.get(id(route))
    if known is None or known[0] is not route:
        known = _QUERY_NAMES[id(route)] = (route, _declared(route))
    return known[1]


_QUERY_NAMES: dict[int, tuple[object, frozenset[str]]] = {}
"""Per route (routes are not hashable), held for the life of the app."""


def _declared(route: object) -> frozenset[str]:
    from fastapi.routing import APIRoute  # noqa: PLC0415 - the services only

    if not isinstance(route, APIRoute):
        return frozenset()
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)


DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'none'"
)
"""The ``Content-Security-Policy`` of ``/docs``: its own files only, its one inline script by
nonce (Swagger UI styles elements inline), never framed."""


def add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` from files the service serves itself (the
    ``swagger-ui-bundle`` package), not from a CDN: it works offline and in closed
    networks, under ``DOCS_POLICY``. ReDoc, CDN-only, is off."""
    from fastapi.openapi.docs import get_swagger_ui_html  # noqa: PLC0415 - the services only
    from fastapi.responses import HTMLResponse  # noqa: PLC0415
    from fastapi.staticfiles import StaticFiles  # noqa: PLC0415
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]  # noqa: PLC0415

    app.mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title} API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )
        nonce = secrets.token_urlsafe(16)
        html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
        policy = DOCS_POLICY.format(nonce=nonce)
        return HTMLResponse(html, headers={"Content-Security-Policy": policy})


def add_security_headers(app: FastAPI) -> None:
    """Every answer says ``X-Content-Type-Options: nosniff`` (a browser never reads a JSON
    or text answer as HTML or script) and ``Referrer-Policy: no-referrer``."""
    app.add_middleware(SecurityHeaders)


class SecurityHeaders:
    """Pure ASGI middleware adding ``_SECURITY_HEADERS`` to every HTTP answer (streamed
    answers, server-sent events, are not buffered)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in _SECURITY_HEADER_NAMES
                ]
                message = {**message, "headers": [*headers, *_SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_secured)


_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
_SECURITY_HEADER_NAMES = {name for name, _ in _SECURITY_HEADERS}

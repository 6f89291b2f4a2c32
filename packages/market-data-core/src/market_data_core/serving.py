"""What the HTTP services (``mds serve``, ``mdo serve``) share about being served."""

from __future__ import annotations

import errno
import json
import secrets
import socket
from collections.abc import Sequence
from functools import cache
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any

from market_data_core.exceptions import DuplicateKeyError, PortInUseError
from market_data_core.logs import redacted_query

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "DOCS_POLICY",
    "DuplicateKeyError",
    "PortInUseError",
    "SecurityHeaders",
    "add_offline_docs",
    "add_security_headers",
    "bind",
    "forwarded",
    "json_charset_refusal",
    "log_request",
    "query_names",
    "strict_json",
    "strict_json_route",
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


def strict_json(body: bytes | str) -> Any:
    """``json.loads`` that refuses an object with the same key twice (which value a parser
    keeps differs from one to the next: a proxy and the service could read two different
    requests). Raises ``DuplicateKeyError`` (a ``json.JSONDecodeError``) naming the key and
    where: ``loc`` ``(3, "price")``."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(items)
        if len(value) == len(items):
            return value
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                return _Duplicated(value, key=key)
            seen.add(key)
        return value  # pragma: no cover - a shorter dict has a repeated key

    document = json.loads(body, object_pairs_hook=pairs)
    found = _duplicate_in(document, ())
    if found is not None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        raise DuplicateKeyError(found[0], found[1], text)
    return document


class _Duplicated(dict[str, Any]):
    """An object that had a key twice (``key``), kept until it is located."""

    def __init__(self, value: dict[str, Any], *, key: str) -> None:
        super().__init__(value)
        self.key = key


def _duplicate_in(
    value: Any, path: tuple[int | str, ...]
) -> tuple[tuple[int | str, ...], str] | None:
    """Where the first object with a duplicated key is (depth first) and the key."""
    if isinstance(value, _Duplicated):
        return path, value.key
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for step, item in items:
        if isinstance(item, dict | list):
            found = _duplicate_in(item, (*path, step))
            if found is not None:
                return found
    return None


def json_charset_refusal(content_type: str | None) -> str | None:
    """Why a JSON body of ``content_type`` is refused (415), else None: JSON is UTF-8
    (RFC 8259); a body declared in another charset would be read as something else."""
    if not content_type:
        return None
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in ("utf-8", "utf8"):
                return f"a JSON body must be UTF-8, not charset={charset}"
    return None


@cache
def strict_json_route() -> type[Any]:
    """A FastAPI ``APIRoute`` class whose JSON bodies are read by ``strict_json`` (a key
    twice: 422 naming it) and must be UTF-8 (415):
    ``APIRouter(route_class=strict_json_route())``."""
    from fastapi import HTTPException  # noqa: PLC0415 - the services only
    from fastapi.routing import APIRoute  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415

    class StrictJSONRequest(Request):
        async def json(self) -> Any:
            if not hasattr(self, "_json"):
                refusal = json_charset_refusal(self.headers.get("content-type"))
                if refusal is not None:
                    raise HTTPException(415, refusal)
                try:
                    self._json = strict_json(await self.body())
                except DuplicateKeyError as exc:
                    raise HTTPException(422, f"invalid JSON body: {exc.msg}") from exc
            return self._json

    class StrictJSONRoute(APIRoute):
        def get_route_handler(self) -> Any:
            handler = super().get_route_handler()

            async def strict(request: Request) -> Any:
                return await handler(StrictJSONRequest(request.scope, request.receive))

            return strict

    return StrictJSONRoute


def guarded_h11(*, head_timeout: float = 10.0, body_timeout: float = 60.0) -> type[Any]:
    """uvicorn's h11 protocol (``uvicorn.Config(http=...)``) with what a service facing
    hostile clients needs and uvicorn lacks:

    - a request's line and headers must arrive within ``head_timeout`` seconds of its first
      byte (or of the connection), its body within ``body_timeout`` seconds of its
      headers: else 408 and the connection is closed (a client declaring 100 bytes and
      sending 10 no longer holds a connection, a task and its memory forever);
    - a request line or headers past h11's limit (16 KiB incomplete) answer 414 (the line)
      or 431 (the headers) instead of a bare 400;
    - after an error answer the connection is closed gently: what the client still sends
      is read and dropped for a moment, so that it reads the answer instead of a reset.
    """
    from market_data_core._h11 import GuardedH11Protocol  # noqa: PLC0415 - the services only

    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"head_timeout": head_timeout, "body_timeout": body_timeout},
    )


PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Paths that orchestrators and scrapers poll: their successful answers log at DEBUG."""


def log_request(logger: Any, request: Any, status: int, seconds: float) -> None:
    """The access log's event for one answered request (uvicorn's own is off): the path,
    only the route's own query values (``redacted_query``), the status, the time and the
    client. A probe answered 2xx/3xx (``PROBES``, polled every few seconds) is DEBUG,
    everything else INFO."""
    fields = {
        "method": request.method,
        "path": request.url.path,
        "query": redacted_query(request.url.query, query_names(request.scope.get("route"))),
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "client": request.client.host if request.client else None,
    }
    if request.url.path in PROBES and status < 400:
        logger.debug("request", **fields)
    else:
        logger.info("request", **fields)


def bind(host: str, port: int, *, fix: str) -> socket.socket:
    """A listening socket on ``host:port`` for uvicorn (``Server.run(sockets=[...])``),
    taken before anything else starts: a port in use is one clear error naming the address
    and ``fix`` (how to choose another), not a stack of log lines after "startup
    complete", and no window in which another process can take the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            msg = f"{shown} is in use (another server is listening there): {fix}"
        else:
            msg = f"cannot listen on {shown}: {exc.strerror or exc}: {fix}"
        raise PortInUseError(msg) from None
    sock.set_inheritable(True)
    return sock

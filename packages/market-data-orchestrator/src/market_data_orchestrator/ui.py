"""The operators' status page, and the read routes it needs.

The page is static files of this package (``ui/``: HTML, CSS, plain JavaScript, its icon;
no build step, no CDN: it works offline) served at ``/ui/``; ``ui/format.js`` holds the pure
parts (price ticks, job and control texts), unit-tested with Node. It signs in with a token of the
deployment (kept in the tab's ``sessionStorage``, sent as a bearer header, never put in a
URL) and shows:

- the jobs: state, replicas, throughput; pause, resume and scale buttons for operator and
  admin tokens only (a viewer's page has none), disabled with the reason when they cannot
  apply to the job's state;
- the store as the orchestrator sees it (verdict and the store's components, ``unknown``
  while its health cannot be read) and its backpressure level over time, both live from
  ``GET /v1/events``, or why no level is heard (``GET /v1/feedback``'s ``reason``);
- the latest bars of a chosen symbol, read from the store (``GET /v1/store/bars``);
- recent audit entries, for admin tokens (``GET /v1/audit`` is admin-only).

It fits a 390 px phone (the tables stack, buttons wrap) as well as a desktop.

Routes added here (viewer): ``GET /v1/me`` (who the token is), ``GET /v1/store`` (the
orchestrator's view of the store), ``GET /v1/store/symbols`` and ``GET /v1/store/bars``
(read through from the store service: the page talks to one origin only). The static files
carry a Content-Security-Policy that allows this origin only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib.resources import files
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, TypeAdapter

from market_data_core import Bar, Timeframe, TimeframeError
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.security import Principal

__all__ = ["CSP", "StoreView", "WhoAmI", "add_status_routes", "add_ui"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
"""Only this origin: no CDN, no inline script, no framing."""
_BARS = TypeAdapter(list[Bar])
_SYMBOL = r"^[A-Za-z0-9^][A-Za-z0-9._:/=^+\-]{0,63}$"
"""Core's symbol pattern (``market_data_core.Symbol``), as a query parameter's."""
_MAX_BARS = 500
_PAGES = 20
"""Pages of the store's answer followed at most (a symbol's bars from many sources)."""


class WhoAmI(BaseModel):
    """The caller's token: its configured name and role (never the token)."""

    name: str
    role: str


class StoreComponent(BaseModel):
    name: str
    state: str
    required: bool


class StoreView(BaseModel):
    """The store as the orchestrator sees it (``market_data_orchestrator.event_feed``)."""

    state: str
    verdict: str | None
    reason: str | None
    url: str | None
    reported: str | None
    components: list[StoreComponent]


class SymbolInfo(BaseModel):
    symbol: str
    latest: datetime
    close: float


Responses = dict[int | str, dict[str, Any]]


def add_status_routes(
    app: FastAPI, orchestrator: Orchestrator, *, viewer: Any, responses: Responses
) -> None:
    """``viewer``: the dependency that admits viewer tokens and above; ``responses``: the
    documented refusals of such a route (401, 429)."""
    no_store: Responses = {404: {"description": "this orchestrator watches no store"}}
    upstream: Responses = {503: {"description": "the store did not answer"}}

    @app.get("/v1/me", response_model=WhoAmI, summary="The caller's token", responses=responses)
    async def me(principal: Principal = viewer) -> WhoAmI:
        return WhoAmI(name=principal.name, role=str(principal.role))

    @app.get(
        "/v1/store",
        response_model=StoreView,
        summary="The store as the orchestrator sees it",
        responses={**responses, **no_store},
    )
    async def store(_: Principal = viewer) -> StoreView:
        view = orchestrator.store_view()
        if view is None:
            raise HTTPException(404, "this orchestrator watches no store")
        return StoreView.model_validate(view)

    @app.get(
        "/v1/store/symbols",
        response_model=list[SymbolInfo],
        summary="Symbols with bars in the store, and their newest bar",
        responses={**responses, **no_store, **upstream},
    )
    async def symbols(
        timeframe: Annotated[str, Query(max_length=8)] = "1m", _: Principal = viewer
    ) -> list[SymbolInfo]:
        latest = await _store_bars(orchestrator, "/v1/bars/latest", {"timeframe": timeframe})
        return [SymbolInfo(symbol=b.symbol, latest=b.start, close=b.close) for b in latest]

    @app.get(
        "/v1/store/bars",
        response_model=list[Bar],
        summary="The latest bars of a symbol, oldest first, read from the store",
        responses={**responses, **no_store, **upstream},
    )
    async def bars(
        symbol: Annotated[str, Query(pattern=_SYMBOL)],
        timeframe: Annotated[str, Query(max_length=8)] = "1m",
        limit: Annotated[int, Query(ge=1, le=_MAX_BARS)] = 120,
        _: Principal = viewer,
    ) -> list[Bar]:
        step = _timeframe(timeframe).delta
        params = {"timeframe": timeframe, "symbols": symbol}
        latest = await _store_bars(orchestrator, "/v1/bars/latest", params)
        if not latest:
            return []
        last = max(b.start for b in latest)
        window: dict[str, Any] = {
            "symbol": symbol,
            "timeframe": timeframe,
            "start": (last - step * (limit - 1)).isoformat(),
            "end": (last + step).isoformat(),
            "limit": _MAX_BARS,
        }
        items: list[Bar] = []
        for _attempt in range(_PAGES):  # the store pages by start: follow next_start
            page = await _store_get(orchestrator, "/v1/bars", window)
            items += _BARS.validate_python(page.get("items", []))
            if not page.get("next_start"):
                break
            window["start"] = page["next_start"]
        return sorted(items, key=lambda b: (b.start, b.source))[-limit:]


def _timeframe(text: str) -> Timeframe:
    try:
        return Timeframe.parse(text)
    except TimeframeError:
        raise HTTPException(422, "timeframe: a positive count and a unit s, m, h or d") from None


async def _store_bars(orchestrator: Orchestrator, path: str, params: dict[str, Any]) -> list[Bar]:
    _timeframe(str(params["timeframe"]))
    return _BARS.validate_python(await _store_get(orchestrator, path, params))


async def _store_get(orchestrator: Orchestrator, path: str, params: dict[str, Any]) -> Any:
    """GET ``path`` of the watched store: its 4xx become 422 (the caller's request), no
    answer (or a 5xx) is 503."""
    base = orchestrator.deployment.store.url
    if base is None:
        raise HTTPException(404, "this orchestrator watches no store")
    timeout = orchestrator.deployment.store.timeout * 2
    try:
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
            response = await client.get(path, params=params)
    except httpx.HTTPError:
        raise HTTPException(503, "the store did not answer") from None
    if response.status_code >= 500:
        raise HTTPException(503, f"the store answered {response.status_code}")
    if response.status_code >= 400:
        raise HTTPException(422, f"the store refused the query ({response.status_code})")
    try:
        return response.json()
    except ValueError:
        raise HTTPException(503, "the store's answer is not JSON") from None


def add_ui(app: FastAPI) -> None:
    """The page at ``/ui/`` (``/`` redirects there), with a strict CSP, and its icon at
    ``/favicon.ico`` too (where browsers and bookmarks look for it)."""
    directory = files("market_data_orchestrator") / "ui"
    app.mount("/ui", StaticFiles(directory=str(directory), html=True), name="ui")
    icon = (directory / "favicon.ico").read_bytes()

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(icon, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/ui"):
            response.headers["Content-Security-Policy"] = CSP
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Cache-Control"] = "no-cache"
        return response

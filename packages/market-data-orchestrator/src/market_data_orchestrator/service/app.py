"""The orchestrator's HTTP API (FastAPI): ``create_app`` assembles the route groups of
this package (``probes``, ``jobs``, ``topology``, ``events``; who may call and the audit
trail in ``access``) and the status page (``market_data_orchestrator.ui``).

- ``GET /healthz`` liveness; ``GET /readyz`` core ``HealthStatus`` (worst-of over the store,
  every job and the feedback transport; 503 when unhealthy); ``GET /metrics``.
- Viewer: ``GET /v1/jobs``, ``GET /v1/jobs/{name}``, ``GET /v1/topology``,
  ``GET /v1/feedback``, ``GET /v1/events`` (server-sent events: job state changes, the
  store's view and feedback), ``GET /v1/me``, ``GET /v1/store``, ``GET /v1/store/symbols``,
  ``GET /v1/store/bars`` (``market_data_orchestrator.ui``).
- The operators' status page at ``/ui/`` (``/`` redirects there).
- Operator: ``POST /v1/jobs/{name}/{start|stop|pause|resume}``, ``POST /v1/jobs/{name}/scale``
  (``{"replicas": n}``: a partitioned job is rebalanced); admin: ``.../reload``,
  ``GET /v1/audit`` and topology edits (``POST /v1/topology/peers``,
  ``DELETE /v1/topology/peers/{node_id}``).

Bearer tokens map to roles (viewer < operator < admin; SHA-256 digests in the deployment,
constant-time compare); every route under ``/v1``, known or not, needs one. Control calls
are rate limited per token, and refused (401) calls per client address (429 +
Retry-After).

The audit log gets a record of every call of the operator and admin routes (allowed,
denied or failed) and of every refused call under ``/v1`` (401, 403, 404, 405, 409, 422,
429), viewer routes and unknown routes included. Its ``action`` is the method and the
route's template (``POST /v1/jobs/{name}/pause``), its ``target`` the job or peer named in
the path (for an unknown route, the path), ``details`` the client address and the status
answered. Of a burst of rate-limited calls only the first is written; the next record of
that caller or address counts the others (``details["suppressed"]``), so that a caller
cannot grow the fsynced log faster than its budget allows.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version as _dist_version
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from market_data_core.api_errors import http_error_problem, problem, validation_problem
from market_data_core.openapi import bearer_scheme, use_problem_for_errors
from market_data_core.serving import (
    add_offline_docs,
    add_security_headers,
    log_request,
    strict_json_route,
)
from market_data_orchestrator.deployment import Role
from market_data_orchestrator.exceptions import AccessError
from market_data_orchestrator.orchestrator import SERVICE, Orchestrator
from market_data_orchestrator.service.access import (
    VIEWER,
    audit_failure,
    refuse,
    role_dependency,
    under_v1,
    validation_summary,
)
from market_data_orchestrator.service.events import add_event_routes
from market_data_orchestrator.service.jobs import add_job_routes
from market_data_orchestrator.service.probes import add_probe_routes
from market_data_orchestrator.service.topology import add_topology_routes
from market_data_orchestrator.ui import add_status_routes, add_ui

__all__ = ["BEARER", "create_app", "problem"]

access_log = structlog.get_logger("market_data_orchestrator.access")

BEARER = bearer_scheme("a token of the deployment's security.tokens")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec: errors as ``application/problem+json`` core ``Problem``s, and
    the bearer token every /v1 route needs (securitySchemes)."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        use_problem_for_errors(spec, bearer=BEARER, secured_prefix="/v1")
        app.openapi_schema = spec
    return app.openapi_schema


def create_app(orchestrator: Orchestrator, *, manage: bool = True) -> FastAPI:
    """The API over ``orchestrator`` (started and closed with the app when ``manage``)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage:
            await orchestrator.start()
        try:
            yield
        finally:
            if manage:
                await orchestrator.aclose()

    app = FastAPI(
        title=SERVICE,
        version=_dist_version(SERVICE),
        summary="Supervise pipeline jobs; pause, resume, reload with an audit trail.",
        lifespan=lifespan,
        docs_url=None,  # served offline by add_offline_docs
        redoc_url=None,
    )
    app.router.route_class = strict_json_route()  # JSON bodies: UTF-8, no key twice
    app.state.orchestrator = orchestrator
    add_offline_docs(app)
    add_security_headers(app)

    @app.exception_handler(AccessError)
    async def _denied(request: Request, exc: AccessError) -> JSONResponse:
        return await refuse(orchestrator, request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if under_v1(request):  # unknown job, route or method; a conflict; not JSON
            refused = await audit_failure(orchestrator, request, exc.status_code, str(exc.detail))
            if refused is not None:
                return refused
        return await http_error_problem(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if under_v1(request):
            refused = await audit_failure(orchestrator, request, 422, validation_summary(exc))
            if refused is not None:
                return refused
        return await validation_problem(request, exc)

    add_probe_routes(app, orchestrator)
    add_job_routes(app, orchestrator)
    add_topology_routes(app, orchestrator)
    add_event_routes(app, orchestrator)
    add_status_routes(app, orchestrator, viewer=role_dependency(Role.VIEWER), responses=VIEWER)
    add_ui(app)
    _add_access_log(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _add_access_log(app: FastAPI) -> None:
    """One structlog event per request (uvicorn's access log is off): secret-looking query
    parameters redacted, never a token."""

    @app.middleware("http")
    async def access(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        log_request(access_log, request, response.status_code, time.perf_counter() - started)
        return response

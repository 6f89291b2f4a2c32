"""The orchestrator's HTTP API (FastAPI).

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

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import version as _dist_version
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from market_data_core import (
    PROBLEM_MEDIA_TYPE,
    AuditEnvelope,
    AuditOutcome,
    ClusterTopology,
    ConfigurationError,
    ControlAction,
    ControlResult,
    HealthState,
    HealthStatus,
    Problem,
    ProblemItem,
)
from market_data_core.serving import (
    add_offline_docs,
    add_security_headers,
    log_request,
    strict_json_route,
)
from market_data_orchestrator.deployment import PeerSpec, Role
from market_data_orchestrator.event_feed import offer
from market_data_orchestrator.exceptions import SupervisorClosedError
from market_data_orchestrator.jobs import JobInfo, ScaleRequest
from market_data_orchestrator.orchestrator import SERVICE, Orchestrator
from market_data_orchestrator.security import (
    AccessError,
    Principal,
    RateLimitedError,
    UnauthenticatedError,
    require,
)
from market_data_orchestrator.ui import add_status_routes, add_ui
from market_data_orchestrator.watchers.feedback import unconfigured_snapshot

__all__ = ["create_app", "problem"]

access_log = structlog.get_logger("market_data_orchestrator.access")


Responses = dict[int | str, dict[str, Any]]
_METHOD_CHARS = 16


def _error(status: int, description: str) -> Responses:
    return {status: {"model": Problem, "description": description}}


_LIMITED: Responses = _error(
    429,
    "too many calls (a token's control calls, an address's refused calls):"
    " retry after Retry-After seconds",
)
_VIEWER: Responses = {**_error(401, "missing, malformed or unknown bearer token"), **_LIMITED}
_ROLE: Responses = {**_VIEWER, **_error(403, "the caller's role is too low")}
_NO_JOB: Responses = _error(404, "no such job")
_NOT_JSON: Responses = _error(400, "the body is not JSON text (e.g. not UTF-8)")


def problem(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    errors: tuple[ProblemItem, ...] = (),
    request: Request | None = None,
) -> JSONResponse:
    """The ``application/problem+json`` answer of ``status`` (core's ``Problem``)."""
    body = Problem.of(
        status, detail, errors=errors, instance=None if request is None else request.url.path
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_MEDIA_TYPE,
    )


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
BEARER = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "a token of the deployment's security.tokens",
    }
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec: errors as ``application/problem+json`` core ``Problem``s, and
    the bearer token every /v1 route needs (securitySchemes)."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        generated = TypeAdapter(Problem).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(generated.pop("$defs", {}))
        schemas["Problem"] = generated
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        spec["components"]["securitySchemes"] = BEARER
        for path, operations in spec["paths"].items():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if "422" in responses:
                    responses["422"] = {"description": "invalid request: what and where"}
                for status, response in responses.items():
                    schema = response.get("content", {}).get("application/json", {}).get("schema")
                    if int(status) >= 400 and schema in (None, _PROBLEM_REF):
                        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
                if path.startswith("/v1"):
                    operation["security"] = [{"bearerAuth": []}]
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
        docs_url=None,  # served offline by _add_offline_docs
        redoc_url=None,
    )
    app.router.route_class = strict_json_route()  # JSON bodies: UTF-8, no key twice
    app.state.orchestrator = orchestrator
    add_offline_docs(app)
    add_security_headers(app)

    @app.exception_handler(AccessError)
    async def _denied(request: Request, exc: AccessError) -> JSONResponse:
        return await _refuse(orchestrator, request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _under_v1(request):  # unknown job, route or method; a conflict; not JSON
            refused = await _failed(orchestrator, request, exc.status_code, str(exc.detail))
            if refused is not None:
                return refused
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, str(exc.detail), headers=headers, request=request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if _under_v1(request):
            refused = await _failed(orchestrator, request, 422, _problems(exc))
            if refused is not None:
                return refused
        errors = tuple(
            ProblemItem(loc=tuple(e["loc"]), msg=e["msg"], type=e["type"]) for e in exc.errors()
        )
        return problem(422, "invalid request", errors=errors, request=request)

    _health_routes(app, orchestrator)
    _job_routes(app, orchestrator)
    _read_routes(app, orchestrator)
    add_status_routes(app, orchestrator, viewer=_role(Role.VIEWER), responses=_VIEWER)
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


def _principal(request: Request) -> Principal:
    orchestrator: Orchestrator = request.app.state.orchestrator
    return orchestrator.auth.authenticate(request.headers.get("authorization"))


def _role(role: Role) -> Any:
    def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        return require(principal, role)

    return Depends(dependency)


Viewer = Annotated[Principal, _role(Role.VIEWER)]
Operator = Annotated[Principal, _role(Role.OPERATOR)]
Admin = Annotated[Principal, _role(Role.ADMIN)]


async def _audit(
    orchestrator: Orchestrator,
    request: Request,
    principal: Principal | None,
    outcome: AuditOutcome,
    reason: str | None = None,
    *,
    status: int | None = None,
) -> None:
    details: dict[str, Any] = {"client": _client(request)}
    if status is not None:
        details["status"] = status
    suppressed = getattr(request.state, "suppressed", 0)
    if suppressed:
        details["suppressed"] = suppressed
    await orchestrator.audit.record(
        actor=principal.name if principal else "anonymous",
        role=principal.role.value if principal else None,
        action=_action(request),
        target=_target(request),
        result=outcome,
        reason=reason,
        service=SERVICE,
        request_id=request.headers.get("x-request-id"),
        details=details,
    )


def _action(request: Request) -> str:
    """The method and the route's template: a bounded name, whatever the path holds."""
    template = getattr(request.scope.get("route"), "path", None)
    return f"{request.method[:_METHOD_CHARS]} {template or '(unknown route)'}"


def _target(request: Request) -> str | None:
    """The job or peer the path names; for an unknown route, the path itself."""
    for key in ("name", "node_id"):
        if key in request.path_params:
            return str(request.path_params[key])
    return request.url.path if request.scope.get("route") is None else None


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _under_v1(request: Request) -> bool:
    path = request.url.path
    return path == "/v1" or path.startswith("/v1/")


def _problems(exc: RequestValidationError) -> str:
    """Where and what, without the input (which may be anything a caller sent)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
        for error in exc.errors()
    )


async def _refuse(orchestrator: Orchestrator, request: Request, exc: AccessError) -> JSONResponse:
    """Answer a refused call and audit it as denied (of a rate-limited burst, the first).

    An unauthenticated call takes a token of its client address: once they are spent it
    is answered 429 instead of 401.
    """
    principal: Principal | None = getattr(exc, "principal", None)
    if isinstance(exc, UnauthenticatedError):
        address = _client(request)
        admission = orchestrator.refusals.admit(address)
        request.state.suppressed = admission.suppressed
        if admission.retry_after is not None:
            exc = RateLimitedError(address, admission.retry_after, audited=admission.audited)
    elif isinstance(exc, RateLimitedError):  # a known caller over its control budget
        principal = orchestrator.auth.authenticate(request.headers.get("authorization"))
    if not isinstance(exc, RateLimitedError) or exc.audited:
        await _audit(
            orchestrator, request, principal, AuditOutcome.DENIED, str(exc), status=exc.status_code
        )
    return problem(exc.status_code, str(exc), headers=exc.headers, request=request)


async def _failed(
    orchestrator: Orchestrator, request: Request, status: int, reason: str
) -> JSONResponse | None:
    """Audit a call under /v1 that could not be done; the 401 answer for a caller without
    a valid token (every /v1 route needs one), else None: answer as usual."""
    try:
        principal = orchestrator.auth.authenticate(request.headers.get("authorization"))
    except UnauthenticatedError as exc:
        return await _refuse(orchestrator, request, exc)
    await _audit(orchestrator, request, principal, AuditOutcome.FAILED, reason, status=status)
    return None


def _health_routes(app: FastAPI, orchestrator: Orchestrator) -> None:
    version = _dist_version(SERVICE)

    @app.get("/healthz", response_model=HealthStatus, summary="Liveness (no dependency I/O)")
    async def healthz() -> HealthStatus:
        return HealthStatus.alive(SERVICE, version=version)

    @app.get(
        "/readyz",
        response_model=HealthStatus,
        summary="Worst-of readiness, 503 when unhealthy",
        responses={503: {"model": HealthStatus, "description": "unhealthy"}},
    )
    async def readyz() -> JSONResponse:
        status = orchestrator.health()
        code = 503 if status.state is HealthState.UNHEALTHY else 200
        return JSONResponse(status.model_dump(mode="json"), status_code=code)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics() -> Response:
        orchestrator.update_metrics()
        return Response(
            generate_latest(orchestrator.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )


def _limit(orchestrator: Orchestrator, request: Request, principal: Principal) -> None:
    """Take a control call of the caller's budget (RateLimitedError: 429, audited as
    denied); the call's audit record reports the refusals left out before it."""
    request.state.suppressed = orchestrator.limiter.enforce(principal.name)


def _job(orchestrator: Orchestrator, name: str) -> JobInfo:
    try:
        job: JobInfo = orchestrator.supervisor.job(name)
    except KeyError:
        raise HTTPException(404, f"no job {name!r}") from None
    return job


async def _act(
    orchestrator: Orchestrator, request: Request, principal: Principal, name: str, verb: str
) -> Any:
    _limit(orchestrator, request, principal)
    _job(orchestrator, name)  # 404, audited as failed
    supervisor = orchestrator.supervisor
    if verb in {"start", "stop"}:
        info = await (supervisor.start(name) if verb == "start" else supervisor.stop(name))
        await _audit(orchestrator, request, principal, AuditOutcome.ALLOWED)
        return info
    result: ControlResult = await supervisor.control(name, ControlAction(verb), by=principal.name)
    outcome = AuditOutcome.ALLOWED if result.ok else AuditOutcome.FAILED
    await _audit(orchestrator, request, principal, outcome, result.message or None)
    if not result.ok:
        return JSONResponse(result.model_dump(mode="json"), status_code=409)
    return result


def _job_routes(app: FastAPI, orchestrator: Orchestrator) -> None:
    @app.get(
        "/v1/jobs", response_model=list[JobInfo], summary="Jobs and their state", responses=_VIEWER
    )
    async def jobs(_: Viewer) -> list[JobInfo]:
        listed: list[JobInfo] = orchestrator.supervisor.jobs()
        return listed

    @app.get(
        "/v1/jobs/{name}",
        response_model=JobInfo,
        summary="One job",
        responses={**_VIEWER, **_NO_JOB},
    )
    async def job(name: str, _: Viewer) -> JobInfo:
        return _job(orchestrator, name)

    for verb in ("start", "stop"):
        _add_action(app, orchestrator, verb, response_model=JobInfo, admin=False)
    for verb in ("pause", "resume"):
        _add_action(app, orchestrator, verb, response_model=ControlResult, admin=False)
    _add_action(app, orchestrator, "reload", response_model=ControlResult, admin=True)

    @app.post(
        "/v1/jobs/{name}/scale",
        response_model=JobInfo,
        summary="Change a job's replica count while it runs (operator)",
        name="scale_job",
        responses={
            **_ROLE,
            **_NO_JOB,
            **_NOT_JSON,
            **_error(409, "the orchestrator is shutting down"),
            **_error(422, "not a possible count (below 1, above max_replicas or the partitions)"),
            **_LIMITED,
        },
    )
    async def scale(
        name: str, body: ScaleRequest, request: Request, principal: Operator
    ) -> JobInfo:
        _limit(orchestrator, request, principal)
        before = _job(orchestrator, name).desired_replicas  # 404, audited as failed
        try:
            info: JobInfo = await orchestrator.supervisor.scale(
                name, body.replicas, by=principal.name
            )
        except ValueError as exc:  # audited as failed
            raise HTTPException(422, str(exc)) from None
        except SupervisorClosedError as exc:
            raise HTTPException(409, str(exc)) from None
        reason = f"replicas {before} -> {info.desired_replicas}"
        await _audit(orchestrator, request, principal, AuditOutcome.ALLOWED, reason)
        return info


def _add_action(
    app: FastAPI, orchestrator: Orchestrator, verb: str, *, response_model: Any, admin: bool
) -> None:
    if admin:

        async def endpoint_admin(name: str, request: Request, principal: Admin) -> Any:
            return await _act(orchestrator, request, principal, name, verb)

        endpoint: Any = endpoint_admin
    else:

        async def endpoint_operator(name: str, request: Request, principal: Operator) -> Any:
            return await _act(orchestrator, request, principal, name, verb)

        endpoint = endpoint_operator
    app.post(
        f"/v1/jobs/{{name}}/{verb}",
        response_model=response_model,
        summary=f"{verb.capitalize()} a job ({'admin' if admin else 'operator'})",
        name=f"{verb}_job",
        responses={
            **_ROLE,
            **_NO_JOB,
            409: {"model": ControlResult, "description": "Not possible in the job's state"},
            **_LIMITED,
        },
    )(endpoint)


def _read_routes(app: FastAPI, orchestrator: Orchestrator) -> None:
    @app.get(
        "/v1/topology",
        response_model=ClusterTopology,
        summary="Peers and their health",
        responses=_VIEWER,
    )
    async def topology(_: Viewer) -> ClusterTopology:
        return orchestrator.topology.snapshot()

    @app.post(
        "/v1/topology/peers",
        response_model=ClusterTopology,
        status_code=201,
        summary="Follow a new peer (admin)",
        responses={
            **_NOT_JSON,
            **_ROLE,
            **_error(409, "A node with that id exists"),
            **_LIMITED,
        },
    )
    async def add_peer(peer: PeerSpec, request: Request, principal: Admin) -> ClusterTopology:
        _limit(orchestrator, request, principal)
        try:
            orchestrator.topology.add_peer(peer)
        except ConfigurationError as exc:  # audited as failed
            raise HTTPException(409, str(exc)) from exc
        await _audit(orchestrator, request, principal, AuditOutcome.ALLOWED, peer.node_id)
        return orchestrator.topology.snapshot()

    @app.delete(
        "/v1/topology/peers/{node_id}",
        response_model=ClusterTopology,
        summary="Stop following a peer (admin)",
        responses={**_ROLE, **_error(404, "No such peer"), **_LIMITED},
    )
    async def remove_peer(node_id: str, request: Request, principal: Admin) -> ClusterTopology:
        _limit(orchestrator, request, principal)
        try:
            orchestrator.topology.remove_peer(node_id)
        except KeyError:  # audited as failed
            raise HTTPException(404, f"no peer {node_id!r}") from None
        await _audit(orchestrator, request, principal, AuditOutcome.ALLOWED, node_id)
        return orchestrator.topology.snapshot()

    @app.get(
        "/v1/feedback",
        summary="Latest feedback per coordinator and rate per provider",
        responses=_VIEWER,
    )
    async def feedback(_: Viewer) -> dict[str, Any]:
        if orchestrator.feedback is None:
            return unconfigured_snapshot()
        return orchestrator.feedback.snapshot()

    @app.get(
        "/v1/audit",
        response_model=list[AuditEnvelope],
        summary="Audit records (admin)",
        responses=_ROLE,
    )
    async def audit(request: Request, principal: Admin, limit: int = 100) -> list[AuditEnvelope]:
        records = await orchestrator.audit.read(max(1, min(limit, 1000)))
        await _audit(orchestrator, request, principal, AuditOutcome.ALLOWED)
        return records

    @app.get(
        "/v1/events",
        summary="Server-sent events: job state changes, the store's view, its feedback",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, **_VIEWER},
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

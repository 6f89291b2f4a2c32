"""The orchestrator's HTTP API (FastAPI).

- ``GET /healthz`` liveness; ``GET /readyz`` core ``HealthStatus`` (worst-of over the store,
  every job and the feedback transport; 503 when unhealthy); ``GET /metrics``.
- Viewer: ``GET /v1/jobs``, ``GET /v1/jobs/{name}``, ``GET /v1/topology``,
  ``GET /v1/feedback``, ``GET /v1/events`` (server-sent events of state changes).
- Operator: ``POST /v1/jobs/{name}/{start|stop|pause|resume}``; admin: ``.../reload``,
  ``GET /v1/audit`` and topology edits (``POST /v1/topology/peers``,
  ``DELETE /v1/topology/peers/{node_id}``).

Bearer tokens map to roles (viewer < operator < admin; SHA-256 digests in the deployment,
constant-time compare). Control actions are rate limited per caller (429 + Retry-After).
Every control action, allowed, denied or failed, is appended to the audit log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as _dist_version
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from market_data_core import (
    AuditEnvelope,
    AuditOutcome,
    ClusterTopology,
    ConfigurationError,
    ControlAction,
    ControlResult,
    HealthState,
    HealthStatus,
)
from market_data_orchestrator.deployment import PeerSpec, Role
from market_data_orchestrator.jobs import JobInfo
from market_data_orchestrator.orchestrator import SERVICE, Orchestrator
from market_data_orchestrator.security import AccessError, Principal, require

__all__ = ["ErrorDetail", "create_app"]


class ErrorDetail(BaseModel):
    """The body of every refusal: 400, 401, 403, 404, 409 (topology), 429."""

    detail: str


Responses = dict[int | str, dict[str, Any]]


def _error(status: int, description: str) -> Responses:
    return {status: {"model": ErrorDetail, "description": description}}


_VIEWER: Responses = _error(401, "missing, malformed or unknown bearer token")
_ROLE: Responses = {**_VIEWER, **_error(403, "the caller's role is too low")}
_LIMITED: Responses = _error(429, "too many control calls: retry after Retry-After seconds")
_NO_JOB: Responses = _error(404, "no such job")
_NOT_JSON: Responses = _error(400, "the body is not JSON text (e.g. not UTF-8)")


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
        summary="Supervise pipeline jobs; pause, resume, reload with an audit trail.",
        lifespan=lifespan,
    )
    app.state.orchestrator = orchestrator

    @app.exception_handler(AccessError)
    async def _denied(request: Request, exc: AccessError) -> JSONResponse:
        principal: Principal | None = getattr(exc, "principal", None)
        caller = getattr(exc, "caller", None)
        if principal is None and caller is not None:  # rate limited: a known caller
            principal = orchestrator.auth.authenticate(request.headers.get("authorization"))
        await _audit(orchestrator, request, principal, AuditOutcome.DENIED, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code, headers=exc.headers)

    _health_routes(app, orchestrator)
    _job_routes(app, orchestrator)
    _read_routes(app, orchestrator)
    return app


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
) -> None:
    await orchestrator.audit.record(
        actor=principal.name if principal else "anonymous",
        role=principal.role.value if principal else None,
        action=f"{request.method} {request.url.path}",
        target=request.path_params.get("name"),
        result=outcome,
        reason=reason[:1000] if reason else None,
        service=SERVICE,
        request_id=request.headers.get("x-request-id"),
    )


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


def _job(orchestrator: Orchestrator, name: str) -> JobInfo:
    try:
        job: JobInfo = orchestrator.supervisor.job(name)
    except KeyError:
        raise HTTPException(404, f"no job {name!r}") from None
    return job


async def _act(
    orchestrator: Orchestrator, request: Request, principal: Principal, name: str, verb: str
) -> Any:
    _job(orchestrator, name)
    orchestrator.limiter.enforce(principal.name)  # RateLimitedError: 429, audited as denied
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
        orchestrator.limiter.enforce(principal.name)
        try:
            orchestrator.topology.add_peer(peer)
        except ConfigurationError as exc:
            await _audit(orchestrator, request, principal, AuditOutcome.FAILED, str(exc))
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
        orchestrator.limiter.enforce(principal.name)
        try:
            orchestrator.topology.remove_peer(node_id)
        except KeyError:
            await _audit(orchestrator, request, principal, AuditOutcome.FAILED, "no such peer")
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
            return {"transport": None}
        return orchestrator.feedback.snapshot()

    @app.get(
        "/v1/audit",
        response_model=list[AuditEnvelope],
        summary="Audit records (admin)",
        responses=_ROLE,
    )
    async def audit(_: Admin, limit: int = 100) -> list[AuditEnvelope]:
        return await orchestrator.audit.read(max(1, min(limit, 1000)))

    @app.get(
        "/v1/events",
        summary="Server-sent events of job state changes",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, **_VIEWER},
    )
    async def events(_: Viewer) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            yield ": connected\n\n"
            async for change in orchestrator.supervisor.events():
                yield f"event: state\ndata: {json.dumps(change.model_dump(mode='json'))}\n\n"
                await asyncio.sleep(0)

        return StreamingResponse(stream(), media_type="text/event-stream")

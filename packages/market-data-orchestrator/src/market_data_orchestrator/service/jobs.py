"""The job routes: list and read jobs (viewer); start, stop, pause, resume and scale them
(operator); reload them (admin). Every control call is rate limited and audited."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from market_data_core import AuditOutcome, ControlAction, ControlResult
from market_data_core.api_errors import NOT_JSON, declared
from market_data_orchestrator.exceptions import SupervisorClosedError
from market_data_orchestrator.jobs import JobInfo, ScaleRequest
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.security import Principal
from market_data_orchestrator.service.access import (
    LIMITED,
    NO_JOB,
    ROLE,
    VIEWER,
    Admin,
    Operator,
    Viewer,
    audit_call,
    limit_calls,
)

__all__ = ["add_job_routes", "job_or_404"]


def job_or_404(orchestrator: Orchestrator, name: str) -> JobInfo:
    try:
        job: JobInfo = orchestrator.supervisor.job(name)
    except KeyError:
        raise HTTPException(404, f"no job {name!r}") from None
    return job


async def _act(
    orchestrator: Orchestrator, request: Request, principal: Principal, name: str, verb: str
) -> Any:
    limit_calls(orchestrator, request, principal)
    job_or_404(orchestrator, name)  # 404, audited as failed
    supervisor = orchestrator.supervisor
    if verb in {"start", "stop"}:
        info = await (supervisor.start(name) if verb == "start" else supervisor.stop(name))
        await audit_call(orchestrator, request, principal, AuditOutcome.ALLOWED)
        return info
    result: ControlResult = await supervisor.control(name, ControlAction(verb), by=principal.name)
    outcome = AuditOutcome.ALLOWED if result.ok else AuditOutcome.FAILED
    await audit_call(orchestrator, request, principal, outcome, result.message or None)
    if not result.ok:
        return JSONResponse(result.model_dump(mode="json"), status_code=409)
    return result


def add_job_routes(app: FastAPI, orchestrator: Orchestrator) -> None:
    @app.get(
        "/v1/jobs", response_model=list[JobInfo], summary="Jobs and their state", responses=VIEWER
    )
    async def jobs(_: Viewer) -> list[JobInfo]:
        listed: list[JobInfo] = orchestrator.supervisor.jobs()
        return listed

    @app.get(
        "/v1/jobs/{name}",
        response_model=JobInfo,
        summary="One job",
        responses={**VIEWER, **NO_JOB},
    )
    async def job(name: str, _: Viewer) -> JobInfo:
        return job_or_404(orchestrator, name)

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
            **ROLE,
            **NO_JOB,
            **NOT_JSON,
            **declared(409, "the orchestrator is shutting down"),
            **declared(422, "not a possible count (below 1, above max_replicas or the partitions)"),
            **LIMITED,
        },
    )
    async def scale(
        name: str, body: ScaleRequest, request: Request, principal: Operator
    ) -> JobInfo:
        limit_calls(orchestrator, request, principal)
        before = job_or_404(orchestrator, name).desired_replicas  # 404, audited as failed
        try:
            info: JobInfo = await orchestrator.supervisor.scale(
                name, body.replicas, by=principal.name
            )
        except ValueError as exc:  # audited as failed
            raise HTTPException(422, str(exc)) from None
        except SupervisorClosedError as exc:
            raise HTTPException(409, str(exc)) from None
        reason = f"replicas {before} -> {info.desired_replicas}"
        await audit_call(orchestrator, request, principal, AuditOutcome.ALLOWED, reason)
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
            **ROLE,
            **NO_JOB,
            409: {"model": ControlResult, "description": "Not possible in the job's state"},
            **LIMITED,
        },
    )(endpoint)

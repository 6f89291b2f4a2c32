"""Who may call, and what is recorded: the role each route needs (bearer tokens), the
per-caller budgets of control calls and refused calls, and the audit record of every call
of the operator and admin routes and of every refused call under ``/v1``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from market_data_core import AuditOutcome
from market_data_core.api_errors import Responses, declared, problem
from market_data_orchestrator.deployment import Role
from market_data_orchestrator.exceptions import (
    AccessError,
    RateLimitedError,
    UnauthenticatedError,
)
from market_data_orchestrator.orchestrator import SERVICE, Orchestrator
from market_data_orchestrator.security import Principal, require

_METHOD_CHARS = 16


LIMITED: Responses = declared(
    429,
    "too many calls (a token's control calls, an address's refused calls):"
    " retry after Retry-After seconds",
)
VIEWER: Responses = {**declared(401, "missing, malformed or unknown bearer token"), **LIMITED}
ROLE: Responses = {**VIEWER, **declared(403, "the caller's role is too low")}
NO_JOB: Responses = declared(404, "no such job")


def principal_of(request: Request) -> Principal:
    orchestrator: Orchestrator = request.app.state.orchestrator
    return orchestrator.auth.authenticate(request.headers.get("authorization"))


def role_dependency(role: Role) -> Any:
    def dependency(principal: Annotated[Principal, Depends(principal_of)]) -> Principal:
        return require(principal, role)

    return Depends(dependency)


Viewer = Annotated[Principal, role_dependency(Role.VIEWER)]
Operator = Annotated[Principal, role_dependency(Role.OPERATOR)]
Admin = Annotated[Principal, role_dependency(Role.ADMIN)]


async def audit_call(
    orchestrator: Orchestrator,
    request: Request,
    principal: Principal | None,
    outcome: AuditOutcome,
    reason: str | None = None,
    *,
    status: int | None = None,
) -> None:
    details: dict[str, Any] = {"client": client_of(request)}
    if status is not None:
        details["status"] = status
    suppressed = getattr(request.state, "suppressed", 0)
    if suppressed:
        details["suppressed"] = suppressed
    await orchestrator.audit.record(
        actor=principal.name if principal else "anonymous",
        role=principal.role.value if principal else None,
        action=action_of(request),
        target=target_of(request),
        result=outcome,
        reason=reason,
        service=SERVICE,
        request_id=request.headers.get("x-request-id"),
        details=details,
    )


def action_of(request: Request) -> str:
    """The method and the route's template: a bounded name, whatever the path holds."""
    template = getattr(request.scope.get("route"), "path", None)
    return f"{request.method[:_METHOD_CHARS]} {template or '(unknown route)'}"


def target_of(request: Request) -> str | None:
    """The job or peer the path names; for an unknown route, the path itself."""
    for key in ("name", "node_id"):
        if key in request.path_params:
            return str(request.path_params[key])
    return request.url.path if request.scope.get("route") is None else None


def client_of(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def under_v1(request: Request) -> bool:
    path = request.url.path
    return path == "/v1" or path.startswith("/v1/")


def validation_summary(exc: RequestValidationError) -> str:
    """Where and what, without the input (which may be anything a caller sent)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
        for error in exc.errors()
    )


async def refuse(orchestrator: Orchestrator, request: Request, exc: AccessError) -> JSONResponse:
    """Answer a refused call and audit it as denied (of a rate-limited burst, the first).

    An unauthenticated call takes a token of its client address: once they are spent it
    is answered 429 instead of 401.
    """
    principal: Principal | None = getattr(exc, "principal", None)
    if isinstance(exc, UnauthenticatedError):
        address = client_of(request)
        admission = orchestrator.refusals.admit(address)
        request.state.suppressed = admission.suppressed
        if admission.retry_after is not None:
            exc = RateLimitedError(address, admission.retry_after, audited=admission.audited)
    elif isinstance(exc, RateLimitedError):  # a known caller over its control budget
        principal = orchestrator.auth.authenticate(request.headers.get("authorization"))
    if not isinstance(exc, RateLimitedError) or exc.audited:
        await audit_call(
            orchestrator, request, principal, AuditOutcome.DENIED, str(exc), status=exc.status_code
        )
    return problem(exc.status_code, str(exc), headers=exc.headers, instance=request.url.path)


async def audit_failure(
    orchestrator: Orchestrator, request: Request, status: int, reason: str
) -> JSONResponse | None:
    """Audit a call under /v1 that could not be done; the 401 answer for a caller without
    a valid token (every /v1 route needs one), else None: answer as usual."""
    try:
        principal = orchestrator.auth.authenticate(request.headers.get("authorization"))
    except UnauthenticatedError as exc:
        return await refuse(orchestrator, request, exc)
    await audit_call(orchestrator, request, principal, AuditOutcome.FAILED, reason, status=status)
    return None


def limit_calls(orchestrator: Orchestrator, request: Request, principal: Principal) -> None:
    """Take a control call of the caller's budget (RateLimitedError: 429, audited as
    denied); the call's audit record reports the refusals left out before it."""
    request.state.suppressed = orchestrator.limiter.enforce(principal.name)

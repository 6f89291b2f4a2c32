"""Admin routes behind ``Authorization: Bearer <MDS_ADMIN_TOKEN>`` (constant-time compare).

With no token configured the routes answer 404: they do not exist. Every call, allowed,
denied or failed, is recorded as a core ``AuditEnvelope`` (in the database's audit log and
in the service log); the token itself is never recorded.

Refused calls (401) are rate-limited per client address (``admin_refusals_per_minute``,
burst ``admin_refusals_burst``; then 429 with ``Retry-After``), and of a burst of them only
the first is audited: the client's next audit record counts the others
(``details["suppressed"]``, ``mds_audit_suppressed_total``). A flood of bad tokens thus
adds a bounded number of audit rows a minute.
"""

from __future__ import annotations

import hmac
import math
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NoReturn

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from market_data_core import (
    AuditEnvelope,
    AuditOutcome,
    RangeDatetime,
    TimeframeError,
    check_text,
)
from market_data_core.serving import strict_json_route
from market_data_store.aggregates import refresh_aggregates
from market_data_store.backfill import BackfillUnavailableError
from market_data_store.exceptions import BackendError, StoreConfigurationError
from market_data_store.jobs import JobRun
from market_data_store.service.deps import ServiceState, State
from market_data_store.service.problems import NOT_JSON, Problem

__all__ = ["router"]

_ACTION_CHARS, _TARGET_CHARS, _REASON_CHARS, _REQUEST_ID_CHARS = 64, 256, 1024, 128
"""The lengths ``AuditEnvelope`` allows: caller input is cut to fit, never a 500."""

logger = structlog.get_logger(__name__)
router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    route_class=strict_json_route(),
    responses={
        401: {"model": Problem, "description": "missing or wrong admin token"},
        404: {"model": Problem, "description": "admin routes disabled: no MDS_ADMIN_TOKEN"},
        429: {
            "model": Problem,
            "description": "too many refused calls from this address (Retry-After)",
        },
    },
)


RangeTime = RangeDatetime
RETENTION_MIN_DAYS = 1
"""The shortest retention an admin call may ask for: an hour's mistake (or ``1e-300``)
must not delete everything stored."""


class RetentionRequest(BaseModel):
    table: Literal["bars", "trades", "quotes", "signals"]
    older_than_days: Annotated[
        float,
        Field(
            ge=RETENTION_MIN_DAYS,
            le=36_500,
            strict=True,
            description=f"At least {RETENTION_MIN_DAYS} day (a JSON number): rows older go.",
        ),
    ]
    dry_run: Annotated[bool, Field(strict=True)] = False
    """Count the rows that would go; delete nothing."""


class RetentionResult(BaseModel):
    table: str
    cutoff: datetime
    deleted: int
    """Rows deleted (with ``dry_run``: that would be)."""
    dry_run: bool = False


class AggregateRequest(BaseModel):
    base: Annotated[str, Field(max_length=8, examples=["1m"])] = "1m"
    targets: Annotated[
        list[Annotated[str, Field(max_length=8)]], Field(min_length=1, max_length=10)
    ]
    start: RangeTime
    end: RangeTime


class AggregateResultModel(BaseModel):
    base: str
    target: str
    symbols: int
    bars: int


class BackfillRequest(BaseModel):
    """A pipeline config (what ``mdp run`` takes, as JSON: DAG or classic form)."""

    name: Annotated[str, Field(min_length=1, max_length=200, examples=["btc-2021-backfill"])]
    pipeline: Annotated[
        dict[str, Any],
        Field(
            description="Its `store` sinks without `url`/`database` write to this service.",
            examples=[
                {
                    "mode": "classic",
                    "source": {"type": "synthetic", "params": {"symbols": 2, "count": 1000}},
                    "operators": [{"type": "resample_ohlc", "params": {"timeframe": "1m"}}],
                    "sink": {"type": "store"},
                }
            ],
        ),
    ]
    symbols: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=10_000)] = []


class SchemaVersion(BaseModel):
    current: str | None
    head: str


async def _audit(
    state: ServiceState,
    request: Request,
    outcome: AuditOutcome,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    route = getattr(request.scope.get("route"), "path", "unmatched")
    envelope = AuditEnvelope(
        actor="admin" if outcome is not AuditOutcome.DENIED else "anonymous",
        role="admin" if outcome is not AuditOutcome.DENIED else None,
        action=f"{request.method} {route}"[:_ACTION_CHARS],  # the route, never caller input
        target=_storable(request.url.path)[:_TARGET_CHARS],
        result=outcome,
        reason=None if reason is None else _storable(reason)[:_REASON_CHARS],
        service="market-data-store",
        request_id=_storable(request.headers.get("x-request-id", ""))[:_REQUEST_ID_CHARS] or None,
        details=details or {},
        ts=datetime.now(UTC),
    )
    logger.info("audit", **envelope.model_dump(mode="json"))
    try:
        await state.store.backend.record_audit(envelope)
    except BackendError as exc:  # the log line above still holds the record
        logger.warning("audit record not stored", error=type(exc).__name__)


def _storable(text: str) -> str:
    """Caller-controlled text made safe to store: NUL and lone surrogates escaped."""
    try:
        return check_text(text)
    except ValueError:
        escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return escaped.replace("\x00", "\\x00")


async def require_admin(state: State, request: Request) -> ServiceState:
    token = state.settings.admin_token
    if token is None or not token.get_secret_value().strip():  # empty: off, never "anyone"
        raise HTTPException(404, "Not Found")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        await _refuse(state, request)
    return state


async def _refuse(state: ServiceState, request: Request) -> NoReturn:
    """401 for a call without the admin token; 429 once its client spent its refusals.
    Audited unless it is in a burst of refusals (then counted, see the module docstring)."""
    client = request.client.host if request.client is not None else "unknown"
    admission = state.refusals.admit(client)
    if admission.audited:
        details = {"suppressed": admission.suppressed} if admission.suppressed else None
        reason = "missing or wrong bearer token"
        if not admission.admitted:
            reason += "; rate limited"
        await _audit(state, request, AuditOutcome.DENIED, reason, details)
    else:
        state.metrics.audit_suppressed.inc()
    if admission.retry_after is not None:
        wait = str(max(1, math.ceil(admission.retry_after)))
        raise HTTPException(429, "too many refused admin calls", headers={"Retry-After": wait})
    raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})


Admin = Annotated[ServiceState, Depends(require_admin)]


@router.post(
    "/migrate",
    response_model=SchemaVersion,
    summary="Apply schema migrations",
    responses={503: {"model": Problem, "description": "the migration failed"}},
)
async def migrate(state: Admin, request: Request) -> SchemaVersion:
    try:
        revision = await state.store.migrate()
    except Exception as exc:
        await _audit(state, request, AuditOutcome.FAILED, type(exc).__name__)
        raise HTTPException(503, f"migration failed: {type(exc).__name__}") from exc
    await _audit(state, request, AuditOutcome.ALLOWED, details={"revision": revision})
    version = await state.store.schema_version()
    return SchemaVersion(current=version["current"], head=str(version["head"]))


@router.get("/schema-version", response_model=SchemaVersion, summary="Current and head revision")
async def schema_version(state: Admin, request: Request) -> SchemaVersion:
    version = await state.store.schema_version()
    await _audit(state, request, AuditOutcome.ALLOWED)
    return SchemaVersion(current=version["current"], head=str(version["head"]))


@router.post(
    "/retention",
    response_model=RetentionResult,
    summary="Delete rows older than N days",
    responses=NOT_JSON,
)
async def retention(state: Admin, request: Request, body: RetentionRequest) -> RetentionResult:
    cutoff = datetime.now(UTC) - timedelta(days=body.older_than_days)
    deleted = await state.store.backend.delete_before(body.table, cutoff, dry_run=body.dry_run)
    details = {"table": body.table, "deleted": deleted, "dry_run": body.dry_run}
    await _audit(state, request, AuditOutcome.ALLOWED, details=details)
    return RetentionResult(table=body.table, cutoff=cutoff, deleted=deleted, dry_run=body.dry_run)


@router.post(
    "/aggregates/refresh",
    response_model=list[AggregateResultModel],
    summary="Recompute higher-timeframe bars from base bars in a range",
    responses=NOT_JSON,
)
async def refresh(
    state: Admin, request: Request, body: AggregateRequest
) -> list[AggregateResultModel]:
    try:
        results = await refresh_aggregates(
            state.store.backend,
            base=body.base,
            targets=body.targets,
            start=body.start,
            end=body.end,
        )
    except (StoreConfigurationError, TimeframeError) as exc:
        await _audit(state, request, AuditOutcome.FAILED, str(exc))
        raise HTTPException(422, str(exc)) from exc
    details = {r.target: r.bars for r in results}
    await _audit(state, request, AuditOutcome.ALLOWED, details=details)
    return [AggregateResultModel(**asdict(r)) for r in results]


@router.post(
    "/backfills",
    response_model=JobRun,
    status_code=202,
    summary="Start a backfill job (a pipeline run by `mdp`, recorded as a job run)",
    responses={
        **NOT_JSON,
        503: {"model": Problem, "description": "market-data-pipeline (`mdp`) is not installed"},
    },
)
async def backfill(
    state: Admin, request: Request, response: Response, body: BackfillRequest
) -> JobRun:
    runner = state.backfill_runner()
    ingest_url = str(request.base_url).rstrip("/")
    try:
        run = await runner.start(body.name, body.pipeline, ingest_url, symbols=body.symbols)
    except BackfillUnavailableError as exc:
        await _audit(state, request, AuditOutcome.FAILED, str(exc))
        raise HTTPException(503, str(exc)) from exc
    except StoreConfigurationError as exc:
        await _audit(state, request, AuditOutcome.FAILED, str(exc)[:1000])
        raise HTTPException(422, f"invalid pipeline: {exc}") from exc
    await _audit(state, request, AuditOutcome.ALLOWED, details={"run_id": run.id, "job": body.name})
    response.headers["Location"] = f"/v1/jobs/{run.id}"
    return run


@router.get("/audit", response_model=list[AuditEnvelope], summary="Recent audit records")
async def audit(state: Admin, request: Request, limit: int = 100) -> list[AuditEnvelope]:
    records = await state.store.backend.recent_audit(max(1, min(limit, 1000)))
    await _audit(state, request, AuditOutcome.ALLOWED)
    return records

"""Job-run routes: pipelines record their runs over HTTP; operators list them and find the
stuck ones."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from market_data_core import Text, TextDatetime
from market_data_core.serving import strict_json_route
from market_data_store.exceptions import StoreConfigurationError
from market_data_store.jobs import JobMode, JobRun, JobRunTracker, JobStatus
from market_data_store.service.deps import State
from market_data_store.service.problems import NOT_JSON, Problem

__all__ = ["router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=strict_json_route())
_NO_RUN: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such run"}}
_FINISHED: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "the run is already finished"}
}


RunId = Annotated[str, PathParam(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class JobStart(BaseModel):
    job_name: Annotated[Text, Field(min_length=1, max_length=200)]
    provider: Annotated[Text, Field(min_length=1, max_length=200)]
    mode: JobMode = "live"
    symbols: list[Annotated[Text, Field(max_length=64)]] = Field(
        default_factory=list, max_length=10_000
    )
    config: dict[str, Any] | None = None


class JobHeartbeat(BaseModel):
    rows_written: Annotated[int, Field(ge=0, le=10**12, strict=True)] = 0
    rows_failed: Annotated[int, Field(ge=0, le=10**12, strict=True)] = 0
    min_ts: TextDatetime | None = None
    max_ts: TextDatetime | None = None


class JobComplete(BaseModel):
    status: JobStatus = "succeeded"
    error: Annotated[Text, Field(max_length=4000)] | None = None


def _tracker(state: State) -> JobRunTracker:
    return JobRunTracker(state.store.backend)


@router.get("", response_model=list[JobRun], summary="Recent job runs, newest first")
async def recent(
    state: State,
    job_name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[JobRun]:
    return await state.store.backend.recent_job_runs(limit, job_name)


@router.get("/stuck", response_model=list[JobRun], summary="Running jobs with an old heartbeat")
async def stuck(
    state: State, older_than_seconds: Annotated[float, Query(gt=0, le=30 * 86400)] = 300
) -> list[JobRun]:
    return await _tracker(state).stuck(timedelta(seconds=older_than_seconds))


@router.get("/{run_id}", response_model=JobRun, summary="One job run", responses=_NO_RUN)
async def one(state: State, run_id: RunId) -> JobRun:
    run = await state.store.backend.get_job_run(run_id)
    if run is None:
        raise HTTPException(404, "no such job run")
    return run


@router.post(
    "", response_model=JobRun, status_code=201, summary="Start a job run", responses=NOT_JSON
)
async def start(state: State, body: JobStart) -> JobRun:
    return await _tracker(state).start(
        body.job_name,
        provider=body.provider,
        mode=body.mode,
        symbols=body.symbols,
        config=body.config,
    )


@router.post(
    "/{run_id}/heartbeat",
    response_model=JobRun,
    summary="Add progress to a run",
    responses={**NOT_JSON, **_NO_RUN, **_FINISHED},
)
async def heartbeat(state: State, run_id: RunId, body: JobHeartbeat) -> JobRun:
    try:
        return await _tracker(state).heartbeat(run_id, **body.model_dump())
    except StoreConfigurationError as exc:
        raise HTTPException(409 if "already" in str(exc) else 404, str(exc)) from exc


@router.post(
    "/{run_id}/complete",
    response_model=JobRun,
    summary="Finish a run",
    responses={**NOT_JSON, **_NO_RUN, **_FINISHED},
)
async def complete(state: State, run_id: RunId, body: JobComplete) -> JobRun:
    try:
        return await _tracker(state).complete(run_id, status=body.status, error=body.error)
    except StoreConfigurationError as exc:
        code = 409 if "already" in str(exc) else 422 if "final status" in str(exc) else 404
        raise HTTPException(code, str(exc)) from exc

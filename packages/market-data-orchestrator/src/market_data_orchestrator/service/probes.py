"""The probes: ``GET /healthz`` (liveness), ``GET /readyz`` (worst-of readiness, 503 when
unhealthy) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from importlib.metadata import version as _dist_version

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from market_data_core import HealthState, HealthStatus
from market_data_orchestrator.orchestrator import SERVICE, Orchestrator

__all__ = ["add_probe_routes"]


def add_probe_routes(app: FastAPI, orchestrator: Orchestrator) -> None:
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

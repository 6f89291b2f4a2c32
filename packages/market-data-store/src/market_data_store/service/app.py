"""The FastAPI application: ``create_app(settings)``; run it with ``mds serve``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import TypeAdapter
from starlette.requests import ClientDisconnect

from market_data_core import Bar, HealthStatus, Quote, Signal, Trade
from market_data_core.api_errors import add_problem_handlers
from market_data_core.openapi import bearer_scheme, use_problem_for_errors
from market_data_core.serving import add_offline_docs, add_security_headers, log_request
from market_data_store.exceptions import (
    BackendError,
    HistoryUnavailableError,
    InvalidValueError,
    ReadError,
    StoreConfigurationError,
)
from market_data_store.service import admin, feedback, ingest, jobs, query, read
from market_data_store.service.deps import ServiceState, State
from market_data_store.service.guard import RequestGuard
from market_data_store.service.metrics import StoreMetrics
from market_data_store.service.problems import (
    problem,
)
from market_data_store.settings import StoreSettings
from market_data_store.store import SERVICE, Store

__all__ = ["create_app"]

logger = structlog.get_logger(__name__)
access_log = structlog.get_logger("market_data_store.access")
_INGEST_PATHS = frozenset(f"/v1/{table}" for table in ("bars", "trades", "quotes", "signals"))


def create_app(
    settings: StoreSettings | None = None,
    *,
    store: Store | None = None,
    registry: CollectorRegistry | None = None,
    migrate_on_start: bool = True,
    stop_on: asyncio.Event | None = None,
) -> FastAPI:
    """The store service. It starts (and on shutdown drains) ``store``, a new ``Store`` of
    ``settings`` by default, applying migrations first unless ``migrate_on_start`` is off.
    ``stop_on``, once set, starts the drain while requests are still being answered (what
    ``mds serve`` sets on SIGTERM)."""
    settings = settings or StoreSettings()
    store = store or Store(settings)
    metrics = StoreMetrics(
        registry or CollectorRegistry(),
        store.coordinator.stats,
        conflicts=lambda: store.rows_upserted.conflicts,
    )
    store.write_observers.append(metrics.write_seconds.observe)
    state = ServiceState(store=store, settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.start(migrate=migrate_on_start, wait_for_database=True)
        if settings.admin_token is None:
            logger.info("admin routes are off (MDS_ADMIN_TOKEN unset or empty)")
        stopper = None if stop_on is None else asyncio.create_task(_stop_when(stop_on, store))
        try:
            yield
        finally:
            if stopper is not None:
                stopper.cancel()
            if state.backfills is not None:
                await state.backfills.aclose()
            await store.stop(drain=True)

    from market_data_store import __version__  # noqa: PLC0415

    app = FastAPI(
        title="market-data-store",
        version=__version__,
        summary="Ingest, query and health of the market-data store.",
        lifespan=lifespan,
        docs_url=None,  # served offline by _add_offline_docs
        redoc_url=None,
    )
    app.state.service = state
    add_offline_docs(app)
    add_security_headers(app)
    _add_health_routes(app, __version__)
    modules = (ingest, query, read, jobs, feedback, admin)
    for module in modules:
        limit = settings.max_body_bytes if module is ingest else settings.max_request_bytes
        app.include_router(module.router, max_body_size=limit)
    _add_error_handlers(app)
    own = [route for route in app.router.routes if isinstance(route, APIRoute)]
    routes = [*own, *(route for module in modules for route in module.router.routes)]

    def too_large(path: str) -> None:
        if path in _INGEST_PATHS:
            metrics.rejected.labels("body_too_large").inc()

    app.add_middleware(RequestGuard, routes=lambda: routes, on_too_large=too_large)
    _add_metrics_middleware(app, metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _stop_when(event: asyncio.Event, store: Store) -> None:
    await event.wait()
    logger.info("stopping: draining the write queue", drain_timeout=store.settings.drain_timeout)
    await store.stop(drain=True)


def _add_health_routes(app: FastAPI, version: str) -> None:
    @app.get("/healthz", response_model=HealthStatus, tags=["health"], summary="Liveness (no I/O)")
    async def healthz() -> HealthStatus:
        return HealthStatus.alive(SERVICE, version=version)

    @app.get(
        "/readyz",
        response_model=HealthStatus,
        tags=["health"],
        summary="Readiness: core HealthStatus, 503 when unhealthy",
        responses={503: {"model": HealthStatus, "description": "unhealthy"}},
    )
    async def readyz(state: State) -> JSONResponse:
        status = await state.store.health()
        state.metrics.readiness = status.state
        return JSONResponse(status.model_dump(mode="json"), status_code=status.http_status)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    async def metrics(state: State) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    add_problem_handlers(app)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, _: ClientDisconnect) -> JSONResponse:
        # the client left (or its body did not arrive in time): nobody reads this answer
        logger.info("the client went away before its body arrived", path=request.url.path)
        return problem(400, "the request body did not arrive")

    @app.exception_handler(BackendError)
    async def backend_error(_: Request, exc: BackendError) -> JSONResponse:
        return problem(503, f"database unavailable: {type(exc).__name__}", retry_after=2)

    @app.exception_handler(InvalidValueError)
    async def invalid_value(_: Request, exc: InvalidValueError) -> JSONResponse:
        return problem(422, f"invalid request: the database cannot store a value ({exc.reason})")

    @app.exception_handler(StoreConfigurationError)
    async def bad_argument(_: Request, exc: StoreConfigurationError) -> JSONResponse:
        return problem(422, str(exc))

    @app.exception_handler(ReadError)
    async def bad_read(_: Request, exc: ReadError) -> JSONResponse:
        return problem(422, str(exc))

    @app.exception_handler(HistoryUnavailableError)
    async def no_history(_: Request, exc: HistoryUnavailableError) -> JSONResponse:
        errors = [{"loc": ["query", "as_known_at"], "msg": str(exc), "type": "history"}]
        return problem(422, str(exc), errors=errors)


def _add_metrics_middleware(app: FastAPI, metrics: StoreMetrics) -> None:
    @app.middleware("http")
    async def count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(elapsed)
        log_request(access_log, request, response.status_code, elapsed)
        return response


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated spec plus the contract schemas the ingest bodies refer to."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        use_problem_for_errors(spec, bearer=BEARER, secured_prefix="/v1/admin")
        for model in (Bar, Trade, Quote, Signal):
            generated = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(generated.pop("$defs", {}))
            schemas.setdefault(model.__name__, generated)
        app.openapi_schema = spec
    return app.openapi_schema


BEARER = bearer_scheme("MDS_ADMIN_TOKEN")

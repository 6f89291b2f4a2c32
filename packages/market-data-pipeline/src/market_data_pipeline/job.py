"""The job runner, ``UnifiedRuntime``: runs DAG or classic pipelines with the store, feedback
and metrics wired.

>>> async with UnifiedRuntime(UnifiedRuntimeSettings.load("examples/quickstart.yaml")) as rt:
...     result = await rt.run()

It is what ``mdp run`` uses and what a supervisor controls (core ``PipelineRunner``):
``state``, ``mode``, ``run``, ``stop``, ``control`` (pause / resume / reload) and ``health``.
For a graph with ``store`` sinks that name no database of their own, it opens one in-process
``Store`` on ``settings.database_url`` (migrated), gives it to those sinks, follows its
feedback (plus Redis or a store service's SSE feed when configured) with the job's
``BackpressureController`` (which also holds a supervisor's pause) and drains and closes
the store at the end.

A source that finds data was lost upstream (a ``redis_stream`` provider: Redis lost stream
entries) adds it to ``losses``: ``health`` is degraded from then on, and ``run`` raises
``DataLossError`` (naming the losses; ``.result`` holds the run's result) once the job
ended, instead of returning as if everything had arrived.

A draining stop (``stop(drain=True)``: SIGTERM in ``mdp run``, a reload) has
``settings.drain_timeout`` seconds: the providers stop at once, what they emitted flows to
the sinks and the store writes what it accepted; what is still in flight when the time is
up is abandoned and named in ``drain`` (rows queued per node, nodes cancelled, records the
store dead-lettered or dropped) and in a warning, never silently lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import structlog
from pydantic import ValidationError

from market_data_core import (
    ControlAction,
    ControlResult,
    ControlStatus,
    HealthComponent,
    HealthState,
    MarketDataError,
)
from market_data_core.transports.fanout import FeedbackFanOut
from market_data_pipeline._drain import Drain
from market_data_pipeline.backpressure.controller import BackpressureController
from market_data_pipeline.exceptions import (
    DataLossError,
    GraphError,
    PipelineError,
    RuntimeStateError,
)
from market_data_pipeline.graph import Graph, LinearSpec, Mode, from_config, load_graph
from market_data_pipeline.metrics import PipelineMetrics
from market_data_pipeline.registry import Registry, default_registry
from market_data_pipeline.runtime import GraphRuntime, RunResult, RunState
from market_data_pipeline.services import Services
from market_data_pipeline.settings import UnifiedRuntimeSettings

__all__ = ["RuntimeState", "UnifiedRuntime"]

logger = structlog.get_logger("market_data_pipeline.job")


class RuntimeState(StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    CLOSED = "closed"


_ACTIVE = frozenset(
    {RuntimeState.STARTING, RuntimeState.RUNNING, RuntimeState.PAUSED, RuntimeState.STOPPING}
)


GraphSource = Graph | LinearSpec | Mapping[str, Any] | str | Path


class UnifiedRuntime:
    """Runs pipeline jobs in either mode; an async context manager."""

    def __init__(
        self,
        settings: UnifiedRuntimeSettings | None = None,
        *,
        registry: Registry | None = None,
        metrics: PipelineMetrics | None = None,
        services: Services | Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings or UnifiedRuntimeSettings()
        self.registry = registry or default_registry()
        self.metrics = metrics or PipelineMetrics()
        self.services = Services.of(services)
        """What the caller shares with every job (a ``Store`` all store sinks write to...)."""
        self.state = RuntimeState.IDLE
        self.mode: Mode | None = None
        self.graph: Graph | None = None
        self.last_result: RunResult | None = None
        self.last_error: str | None = None
        self.controller: BackpressureController | None = None
        """The running (or last) job's rate controller: feedback, pause and stop."""
        self._runtime: GraphRuntime | None = None
        self._reload = False
        self._stop_requested = False
        self._paused = False
        self._entered = False
        self._metrics_server: Any = None
        self.store_report: dict[str, Any] = {}
        """For the in-process store: its (redacted) database, rows per table before/after
        (``tables``) and rows it wrote in the run per table (``written``: new ones and
        those whose key it held)."""
        self.losses: list[str] = []
        """Data the sources of the current (or last) run found lost upstream."""
        self.drain: dict[str, Any] = {}
        """How the last run's stop drained (``{}``: it was not stopped): ``timeout``,
        ``seconds``, ``complete`` and, when it is not, ``not_flushed``."""
        self._drain = Drain(self.settings.drain_timeout)
        self._last_runtime: GraphRuntime | None = None

    @property
    def current(self) -> GraphRuntime | None:
        """The graph runtime of the running job, if any."""
        return self._runtime

    @property
    def last(self) -> GraphRuntime | None:
        """The graph runtime of the running job or, once it ended, of the last one."""
        return self._last_runtime

    @property
    def pauses(self) -> int:
        """Times the providers paused under hard backpressure (this runtime's last job)."""
        return 0 if self.controller is None else self.controller.pauses

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._entered = True
        if self.settings.metrics_port is not None and self._metrics_server is None:
            from prometheus_client import start_http_server  # noqa: PLC0415

            self._metrics_server, _ = start_http_server(
                self.settings.metrics_port,
                addr=self.settings.metrics_host,
                registry=self.metrics.registry,
            )
            host, port = self._metrics_server.server_address[:2]
            logger.info("metrics listening", url=f"http://{host}:{port}/metrics")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(drain=True)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()  # else its listening socket stays open
            self._metrics_server = None
        self.state = RuntimeState.CLOSED
        self._entered = False

    def load(self, source: GraphSource | None = None) -> Graph:
        """The graph from an object, a config mapping or a file (default: settings.config)."""
        source = source if source is not None else self.settings.config
        if source is None:
            msg = "no pipeline config: pass one to run() or set MDP_CONFIG / --config"
            raise GraphError(msg)
        if isinstance(source, Graph):
            graph = source
        elif isinstance(source, LinearSpec):
            graph = source.to_graph()
        elif isinstance(source, Mapping):
            graph = from_config(source)
        else:
            graph = load_graph(source)
        if self.settings.partitions is not None:
            graph = graph.for_partitions(self.settings.partitions)
        else:
            graph.check_unpartitioned()
        wanted = self.settings.mode
        if wanted not in ("auto", graph.mode):
            raise GraphError(
                f"the config is a {graph.mode} pipeline but mode {wanted} was required",
                source=graph.source,
            )
        return graph

    async def run(self, source: GraphSource | None = None) -> RunResult:
        """Run a job to its end (a reload restarts it with the re-read config)."""
        if self.state in _ACTIVE:
            raise RuntimeStateError(f"a job is already {self.state}")
        graph = self.load(source)
        self._stop_requested = False
        self._paused = False
        self._drain = Drain(self.settings.drain_timeout)
        self.losses = []
        self.state = RuntimeState.STARTING
        try:
            while True:
                result = await self._run_once(graph)
                if not self._reload:
                    if self.losses:
                        raise DataLossError(self.losses, result)
                    return result
                self._reload = False
                self._stop_requested = False
                self._drain = Drain(self.settings.drain_timeout)
                self.state = RuntimeState.STARTING
                graph = self.load(graph.source) if graph.source else self.load(source)
                logger.info("pipeline reloaded", job=graph.name)
        except DataLossError as error:
            self.last_error = str(error)
            raise
        except Exception as error:
            if self.state in _ACTIVE:  # failed before or after the graph ran
                self.state = RuntimeState.FAILED
                self.last_error = str(error)
            raise

    async def stop(self, *, drain: bool = True) -> None:
        """Stop the running job (if any): drain what was emitted (for at most
        ``settings.drain_timeout`` seconds), or cancel. A stop also cancels a reload in
        progress: the job ends."""
        self._reload = False
        await self._stop(drain=drain)

    async def _stop(self, *, drain: bool) -> None:
        self._stop_requested = True
        if drain:
            self._drain.start()
        runtime = self._runtime
        if runtime is None:
            return
        if self.controller is not None:
            self.controller.resume()  # a paused provider must see the stop
        self.state = RuntimeState.STOPPING
        await runtime.stop(drain=drain)
        if drain:
            self._drain.watch(runtime)

    async def control(self, action: ControlAction) -> ControlResult:
        """Pause (providers hold at the next batch), resume (where they paused), reload."""
        target = self.graph.name if self.graph is not None else "pipeline"

        def answer(status: ControlStatus, message: str) -> ControlResult:
            return ControlResult(
                action=action, target=target, status=status, message=message, ts=datetime.now(UTC)
            )

        if self.state not in _ACTIVE or self.state is RuntimeState.STOPPING:
            return answer(ControlStatus.REJECTED, f"no job is running (state {self.state})")
        if action is ControlAction.PAUSE:
            self._paused = True  # a job still opening starts paused
            if self.controller is not None:
                self.controller.pause()
            self.state = RuntimeState.PAUSED
            return answer(ControlStatus.ACCEPTED, "providers paused; in-flight batches drain")
        if action is ControlAction.RESUME:
            self._paused = False
            if self.controller is not None:
                self.controller.resume()
            self.state = RuntimeState.RUNNING if self._runtime else RuntimeState.STARTING
            return answer(ControlStatus.ACCEPTED, "providers resumed")
        self._reload = True
        await self._stop(drain=True)
        return answer(ControlStatus.ACCEPTED, "draining, then restarting with the re-read config")

    def health(self) -> HealthComponent:
        """This runtime as a component of a supervisor's health."""
        state = {
            RuntimeState.FAILED: HealthState.UNHEALTHY,
            RuntimeState.PAUSED: HealthState.DEGRADED,
        }.get(self.state, HealthState.HEALTHY)
        details: dict[str, Any] = {"state": str(self.state), "mode": str(self.mode or "none")}
        if self.losses:  # data lost upstream: the bars made from it are not whole
            if state is HealthState.HEALTHY:
                state = HealthState.DEGRADED
            details["data_losses"] = len(self.losses)
            details["data_loss"] = self.losses[-1][:500]
        if self.controller is not None:
            details["rate_scale"] = float(self.controller.scale)
        if self.last_error:
            details["error"] = self.last_error[:500]
        return HealthComponent(name="pipeline", state=state, details=details)

    # -- one run ----------------------------------------------------------------------

    async def _run_once(self, graph: Graph) -> RunResult:
        self.drain = {}
        drain = self._drain
        result = await self._run_graph(graph)
        self.drain = drain.report(result)
        if self.drain and not self.drain["complete"]:
            logger.warning(
                "stopped before everything was flushed",
                job=graph.name,
                timeout=drain.timeout,
                not_flushed=self.drain["not_flushed"],
                hint="the store's upserts are idempotent: run a replay or synthetic job again"
                " to fill the gap; `mds dlq replay` writes dead-lettered batches",
            )
        elif self.drain:
            logger.info("drained", job=graph.name, seconds=self.drain["seconds"])
        return result

    async def _run_graph(self, graph: Graph) -> RunResult:
        validated = graph.validated(self.registry)
        self.graph, self.mode = graph, graph.mode
        mode = str(graph.mode)
        async with AsyncExitStack() as stack:
            services = self._job_services()
            store = await self._open_store(graph, services, stack)
            stack.push_async_callback(services.aclose)  # stores no sink released
            publisher = await self._rate_publisher(store, services, stack)
            controller = self._make_controller(graph.name, publisher)
            if self._paused:
                controller.pause()
            self.controller = services.feedback = controller
            await self._link_feedback(controller, store, stack)
            runtime = GraphRuntime(
                validated,
                rate=controller,
                channel_capacity=self.settings.channel_capacity,
                metrics=self.metrics,
                services=services,
            )
            self._runtime = self._last_runtime = runtime
            self.state = RuntimeState.PAUSED if self._paused else RuntimeState.RUNNING
            if self._stop_requested:  # a stop (e.g. SIGTERM) came while the job was opening
                await runtime.stop(drain=True)
                self._drain.watch(runtime)
            self.metrics.runtime_up.labels(mode=mode).set(1)
            self.metrics.jobs_running.labels(mode=mode).inc()
            logger.info("pipeline started", job=graph.name, mode=mode, nodes=len(graph.nodes))
            before = await _counts(store)
            upserted = _upserted(store)
            try:
                result = await runtime.run()
            except PipelineError as error:
                self.state = RuntimeState.FAILED
                self.last_error = str(error)
                raise
            except asyncio.CancelledError:
                self.state = RuntimeState.STOPPED
                raise
            finally:
                await self._drain.stop_watching()
                self.metrics.jobs_running.labels(mode=mode).dec()
                self.metrics.runtime_up.labels(mode=mode).set(0)
                self._runtime = None
                self.last_result = runtime.result()
            if store is not None:
                after = await self._drain.bounded(_counts(store), "counting rows") or {}
                done = _upserted(store)
                self.store_report = {
                    "database": str(store.url),
                    "tables": {t: (before[t], after[t]) for t in after if before[t] or after[t]},
                    "written": {t: done[t] - upserted[t] for t in done if done[t] > upserted[t]},
                }
            self.state = (
                RuntimeState.COMPLETED
                if result.state is RunState.COMPLETED
                else RuntimeState.STOPPED
            )
            logger.info(
                "pipeline finished",
                job=graph.name,
                state=str(result.state),
                seconds=round(result.seconds, 3),
            )
            return result

    def _job_services(self) -> Services:
        """This job's services: the caller's, the settings where the caller gave none."""
        given, settings = self.services, self.settings
        return Services(
            store=given.store,
            database=settings.database_url,
            redis_url=given.redis_url if given.redis_url is not None else settings.redis_url,
            state_dir=given.state_dir if given.state_dir is not None else settings.state_dir,
            data_losses=self.losses,  # the sources append what was lost
            extra=dict(given.extra),
        )

    async def _open_store(self, graph: Graph, services: Services, stack: AsyncExitStack) -> Any:
        """One in-process store for the `store` sinks that name no database/url of their own
        (shared with those naming the same database)."""
        if services.store is not None:
            return services.store
        wants = [
            n for n in graph.nodes if n.type == "store" and not {"database", "url"} & set(n.params)
        ]
        if not wants:
            return None
        try:
            from market_data_store.settings import StoreSettings  # noqa: PLC0415
            from market_data_store.store import Store  # noqa: PLC0415
        except ImportError:
            raise GraphError(
                "a `store` sink needs market-data-store: pip install 'market-data-pipeline[store]'",
                node_id=wants[0].id,
                source=graph.source,
                line=wants[0].line,
            ) from None
        try:
            store = Store(StoreSettings(database_url=self.settings.database_url))
        except ValidationError as error:  # a database URL that does not parse
            reason = "; ".join(p["msg"].removeprefix("Value error, ") for p in error.errors())
            message = f"invalid database URL (--database-url or MDP_DATABASE_URL): {reason}"
            raise PipelineError(message) from None
        except MarketDataError as error:  # its driver is missing: names the pip install
            raise PipelineError(str(error)) from None
        try:
            await store.start(migrate=True)
        except (MarketDataError, OSError) as error:  # unreachable, wrong password...
            said = str(error)  # the URL once: the driver's message may name it already
            where = "" if str(store.url) in said else f" {store.url}"
            raise PipelineError(f"cannot open the store's database{where}: {said}") from None
        stack.push_async_callback(self._close_store, store)
        services.adopt(self.settings.database_url.get_secret_value(), store)
        return store

    async def _close_store(self, store: Any) -> None:
        """Drain and stop the in-process store (after a stop, in the drain's time left)."""
        await self._drain.close_store(store)

    async def _rate_publisher(
        self, store: Any, services: Services, stack: AsyncExitStack
    ) -> FeedbackFanOut:
        """Where RateAdjustments go: the in-process store's bus and Redis, when configured,
        and the bus of every store a sink opens later (``services.publishers``)."""
        publishers = services.publishers
        if store is not None:
            publishers.append(store.bus)
        if self.settings.redis_url is not None:
            from market_data_core.transports.redis import RedisFeedbackPublisher  # noqa: PLC0415

            redis = RedisFeedbackPublisher.from_url(
                self.settings.redis_url.get_secret_value(),
                stream=self.settings.feedback_stream,
                heartbeat_interval=None,
            )
            await redis.start()
            stack.push_async_callback(redis.aclose)
            publishers.append(redis)
        return FeedbackFanOut(publishers)

    def _make_controller(self, provider: str, publisher: FeedbackFanOut) -> BackpressureController:
        return BackpressureController(
            provider=provider,
            publisher=publisher,
            coordinator_id=self.settings.coordinator_id,
            soft_scale=self.settings.soft_scale,
            base_rate=self.settings.base_rate,
            metrics=self.metrics,
        )

    async def _link_feedback(
        self, controller: BackpressureController, store: Any, stack: AsyncExitStack
    ) -> None:
        from market_data_pipeline.backpressure.links import link_feedback  # noqa: PLC0415

        s = self.settings
        bus = store.bus if store is not None else None
        if bus is None and s.redis_url is None and s.store_feedback_url is None:
            return
        link = link_feedback(
            controller,
            bus=bus,
            redis_url=s.redis_url,
            sse_url=s.store_feedback_url,
            redis_stream=s.feedback_stream,
        )
        await stack.enter_async_context(link)


def _upserted(store: Any) -> dict[str, int]:
    """Rows the store wrote so far, per table (a key it already held counts too)."""
    done = getattr(store, "rows_upserted", None)
    return {table: int(getattr(done, table, 0)) for table in ("bars", "trades", "quotes")}


async def _counts(store: Any) -> dict[str, int]:
    if store is None:
        return {}
    return {table: await store.backend.count(table) for table in ("bars", "trades", "quotes")}

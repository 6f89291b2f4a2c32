"""The DAG runtime: runs a validated graph as asyncio tasks joined by bounded channels.

One task per node. Providers run until exhausted or stopped; operators read their input
channel, call the operator, and forward end-of-stream once all their inputs ended (after
``finish`` flushed their state); sinks write and flush. An exception in any node cancels
the others and surfaces as one :class:`NodeError` naming the node: never a hang.

``stop(drain=True)`` asks providers to stop producing and lets everything already emitted
flow to the sinks; it stops the job's :class:`BackpressureController`, so a provider
waiting for its rate (a token bucket, a pause under hard backpressure or a manual one)
stops waiting at once. ``stop(drain=False)`` cancels at once (also after a
draining stop, to give up on a drain that takes too long); the result then names the
nodes that were cancelled (``cancelled``: their open windows or buffers were not emitted)
and the rows still waiting in front of each node or in the batch it was working on
(``unflushed``).

Marks (:mod:`market_data_pipeline.marks`) follow the batches before them: operators forward
them through :meth:`Operator.on_mark`, sinks commit and count them as arrived; a mark a
cancelled run never completes leaves its source entries unacknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pyarrow as pa
import structlog

from market_data_core import RateController
from market_data_pipeline.backpressure.controller import BackpressureController
from market_data_pipeline.channel import END, Channel
from market_data_pipeline.compile import ValidatedGraph
from market_data_pipeline.components import (
    Component,
    Context,
    NodeStats,
    Operator,
    Provider,
    SinkComponent,
)
from market_data_pipeline.exceptions import NodeError, RuntimeStateError
from market_data_pipeline.graph import Graph
from market_data_pipeline.marks import Mark
from market_data_pipeline.metrics import PipelineMetrics
from market_data_pipeline.registry import Registry
from market_data_pipeline.services import Services

__all__ = ["GraphRuntime", "RunResult", "RunState"]

logger = structlog.get_logger("market_data_pipeline.runtime")


class RunState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(slots=True)
class RunResult:
    """What a run did, node by node."""

    job: str
    state: RunState
    seconds: float
    nodes: dict[str, NodeStats] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    cancelled: list[str] = field(default_factory=list)
    """Nodes a cancelling stop ended before they finished (their state was not emitted)."""
    unflushed: dict[str, int] = field(default_factory=dict)
    """Rows that were waiting in front of each node, or in the batch it was processing or
    writing (counted in full, though part of it may have been passed on), when a
    cancelling stop came."""

    def counter(self, name: str) -> int:
        """A named counter summed over nodes (``late``, ``dropped``, ``pauses``...)."""
        return sum(stats.counters.get(name, 0) for stats in self.nodes.values())

    @property
    def written(self) -> int:
        """Rows the sinks received."""
        return sum(s.items_in for n, s in self.nodes.items() if self.kinds.get(n) == "sink")


class GraphRuntime:
    """Executes one graph once."""

    def __init__(
        self,
        graph: Graph | ValidatedGraph,
        *,
        registry: Registry | None = None,
        rate: RateController | None = None,
        channel_capacity: int = 16,
        metrics: PipelineMetrics | None = None,
        services: Services | Mapping[str, Any] | None = None,
    ) -> None:
        self.validated = graph if isinstance(graph, ValidatedGraph) else graph.validated(registry)
        self.graph = self.validated.graph
        self.job = self.graph.name
        self.rate: RateController = rate or BackpressureController.unlimited()
        self.channel_capacity = channel_capacity
        self.metrics = metrics
        self.services = Services.of(services)
        self._owns_services = not isinstance(services, Services)
        self.stats = {node_id: NodeStats() for node_id in self.validated.order}
        self.stopping = asyncio.Event()
        self.state = RunState.CREATED
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: dict[str, Channel] = {}
        self._started = 0.0
        self._late_reported: dict[str, int] = {}
        self._abandoned = False
        self._cancelled: list[str] = []
        self._unflushed: dict[str, int] = {}
        self._working: dict[str, int] = {}
        """Rows of the batch each node is processing or writing (until it returns)."""
        self._paths = self._count_paths()
        self._schemas = self._input_schemas()

    # -- public -----------------------------------------------------------------------

    @property
    def components(self) -> Mapping[str, Component[Any]]:
        return self.validated.components

    def channel_depths(self) -> dict[str, int]:
        """Batches waiting in front of each node."""
        return {node_id: ch.depth for node_id, ch in self._channels.items()}

    def channel_rows(self) -> dict[str, int]:
        """Rows waiting in front of each node (queued, or being put by a producer that
        waits for space)."""
        return {node_id: ch.rows + ch.putting for node_id, ch in self._channels.items()}

    async def run(self) -> RunResult:
        """Run the graph to completion (or until stopped); raise :class:`NodeError` on failure."""
        if self.state is not RunState.CREATED:
            raise RuntimeStateError(
                f"this runtime already ran (state {self.state}); build a new one"
            )
        self.state = RunState.RUNNING
        self._started = time.perf_counter()
        self._build_channels()
        try:
            await self._open_all()
            async with asyncio.TaskGroup() as group:
                for node_id in [] if self._abandoned else self.validated.order:
                    self._tasks.append(group.create_task(self._run_node(node_id), name=node_id))
        except NodeError as error:
            self._failed(error)
            raise
        except BaseExceptionGroup as group:
            errors = _node_errors(group)
            if not errors:
                raise
            self._failed(errors[0])
            raise errors[0] from None
        except asyncio.CancelledError:
            self.state = RunState.STOPPED
            raise
        finally:
            await self._close_all()
        self.state = RunState.STOPPED if self.stopping.is_set() else RunState.COMPLETED
        return self.result()

    def _failed(self, error: NodeError) -> None:
        self.state = RunState.FAILED
        logger.error("pipeline failed", job=self.job, node=error.node_id, error=str(error.error))

    async def stop(self, *, drain: bool = True) -> None:
        """Stop producing; with ``drain`` let emitted batches reach the sinks, else cancel
        (recording what is abandoned: see the module docstring)."""
        if self.state is RunState.RUNNING:
            self.state = RunState.STOPPING
        self.stopping.set()
        if isinstance(self.rate, BackpressureController):
            self.rate.stop()  # a provider waiting for its rate stops waiting
        if not drain:
            self._abandon()

    def _abandon(self) -> None:
        if not self._abandoned:
            self._abandoned = True
            self._cancelled = [task.get_name() for task in self._tasks if not task.done()]
            rows = self.channel_rows()
            for node_id, working in self._working.items():
                rows[node_id] = rows.get(node_id, 0) + working
            self._unflushed = {node_id: n for node_id, n in rows.items() if n}
        for task in self._tasks:
            task.cancel()

    def result(self) -> RunResult:
        return RunResult(
            job=self.job,
            state=self.state,
            seconds=time.perf_counter() - self._started if self._started else 0.0,
            nodes=dict(self.stats),
            kinds={n: str(k) for n, k in self.validated.kinds.items()},
            types={spec.id: spec.type for spec in self.graph.nodes},
            cancelled=list(self._cancelled),
            unflushed=dict(self._unflushed),
        )

    # -- wiring -----------------------------------------------------------------------

    def _build_channels(self) -> None:
        for node_id in self.validated.order:
            inputs = self.validated.inputs(node_id)
            if inputs:
                self._channels[node_id] = Channel(
                    node_id, capacity=self.channel_capacity, producers=len(inputs)
                )

    def _count_paths(self) -> dict[str, int]:
        """Paths from each node to a sink (each edge of a fan-out or diamond counts)."""
        paths: dict[str, int] = {}
        for node_id in reversed(self.validated.order):
            if isinstance(self.components[node_id], SinkComponent):
                paths[node_id] = 1
            else:
                paths[node_id] = sum(paths[e.target] for e in self.validated.outputs(node_id))
        return paths

    def _input_schemas(self) -> dict[str, pa.Schema | None]:
        """The columns that reach each node, where the components can tell before running
        (``Component.output_schema`` along the edges, in topological order)."""
        schemas: dict[str, pa.Schema | None] = {}
        for node_id in self.validated.order:
            component = self.components[node_id]
            given = schemas.get(node_id)
            for edge in self.validated.outputs(node_id):
                try:
                    out = component.output_schema(edge.port, given)
                except Exception:  # a hint only: never a reason to fail the graph
                    out = None
                if out is not None and schemas.get(edge.target) is None:
                    schemas[edge.target] = out
        return schemas

    def _restore(self) -> None:
        """Give each operator the stamp its provider saved with the last acknowledgement."""
        for component in self.components.values():
            if not isinstance(component, Provider):
                continue
            for node_id, stamp in component.restored.items():
                target = self.components.get(node_id)
                if isinstance(target, Operator):
                    target.restore(stamp)

    def _targets(self, node_id: str) -> dict[str, list[Channel]]:
        ports: dict[str, list[Channel]] = {port: [] for port in self.components[node_id].outputs}
        for e in self.validated.outputs(node_id):
            ports[e.port].append(self._channels[e.target])
        return ports

    def _context(self, node_id: str) -> Context:
        return Context(
            node_id=node_id,
            job=self.job,
            stats=self.stats[node_id],
            rate=self.rate,
            stopping=self.stopping,
            services=self.services,
            paths=self._paths[node_id],
            schema=self._schemas.get(node_id),
            metrics=self.metrics,
        )

    async def _open_all(self) -> None:
        for node_id in self.validated.order:
            try:
                await self.components[node_id].open(self._context(node_id))
            except Exception as error:
                raise NodeError(node_id, error) from error
        self._restore()

    async def _close_all(self) -> None:
        for node_id in reversed(self.validated.order):
            try:
                await self.components[node_id].close()
            except Exception as error:
                logger.warning("closing a node failed", node=node_id, error=repr(error))
        if self._owns_services:  # stores a sink opened and could not release
            await self.services.aclose()

    # -- node tasks -------------------------------------------------------------------

    async def _run_node(self, node_id: str) -> None:
        component = self.components[node_id]
        targets = self._targets(node_id)
        emit = _Emitter(node_id, targets, self.stats[node_id], self.metrics, self.job)
        try:
            if isinstance(component, Provider):
                await component.run(emit)
            elif isinstance(component, Operator):
                await self._operate(node_id, component, emit)
            elif isinstance(component, SinkComponent):
                await self._sink(node_id, component)
        except asyncio.CancelledError:
            raise
        except NodeError:
            raise
        except Exception as error:
            raise NodeError(node_id, error) from error
        for channels in targets.values():
            for channel in channels:
                await channel.close()

    async def _operate(self, node_id: str, op: Operator[Any], emit: _Emitter) -> None:
        channel = self._channels[node_id]
        stats = self.stats[node_id]
        interval = op.timer_interval
        loop = asyncio.get_running_loop()
        next_timer = loop.time() + interval if interval else None
        while True:
            try:
                if next_timer is None:
                    item = await channel.get()
                else:
                    item = await asyncio.wait_for(channel.get(), max(next_timer - loop.time(), 0))
            except TimeoutError:
                item = None
            if next_timer is not None and loop.time() >= next_timer:
                await op.on_timer(emit)
                next_timer = loop.time() + (interval or 0)
            if item is None:
                continue
            if item is END:
                await op.finish(emit)
                return
            if isinstance(item, Mark):
                await op.on_mark(item, emit)
                continue
            assert isinstance(item, pa.Table)
            stats.items_in += item.num_rows
            stats.batches_in += 1
            started = time.perf_counter()
            self._working[node_id] = item.num_rows
            await op.process(item, emit)
            del self._working[node_id]
            self._observe(node_id, item.num_rows, time.perf_counter() - started)

    async def _sink(self, node_id: str, sink: SinkComponent[Any]) -> None:
        channel = self._channels[node_id]
        stats = self.stats[node_id]
        while True:
            item = await channel.get()
            if item is END:
                await sink.flush()
                return
            if isinstance(item, Mark):
                await sink.commit()
                item.arrive()
                continue
            assert isinstance(item, pa.Table)
            stats.items_in += item.num_rows
            stats.batches_in += 1
            started = time.perf_counter()
            self._working[node_id] = item.num_rows
            await sink.write(item)
            del self._working[node_id]
            self._observe(node_id, item.num_rows, time.perf_counter() - started)

    def _observe(self, node_id: str, rows: int, seconds: float) -> None:
        stats = self.stats[node_id]
        stats.busy_seconds += seconds
        if self.metrics is not None:
            self.metrics.observe_batch(self.job, node_id, rows, seconds)
            late = stats.counters.get("late", 0)
            if late > self._late_reported.get(node_id, 0):
                self.metrics.late.labels(job=self.job, node=node_id).inc(
                    late - self._late_reported.get(node_id, 0)
                )
                self._late_reported[node_id] = late
            channel = self._channels.get(node_id)
            if channel is not None:
                self.metrics.channel_depth.labels(job=self.job, node=node_id).set(channel.depth)


def _node_errors(group: BaseExceptionGroup[BaseException]) -> list[NodeError]:
    found: list[NodeError] = []
    for error in group.exceptions:
        if isinstance(error, NodeError):
            found.append(error)
        elif isinstance(error, BaseExceptionGroup):
            found += _node_errors(error)
    return found


class _Emitter:
    """The ``emit`` a node gets: counts and forwards a batch to a port's channels."""

    __slots__ = ("job", "metrics", "node_id", "stats", "targets")

    def __init__(
        self,
        node_id: str,
        targets: dict[str, list[Channel]],
        stats: NodeStats,
        metrics: PipelineMetrics | None,
        job: str,
    ) -> None:
        self.node_id = node_id
        self.targets = targets
        self.stats = stats
        self.metrics = metrics
        self.job = job

    async def __call__(self, batch: pa.Table, port: str = "out") -> None:
        try:
            channels = self.targets[port]
        except KeyError:
            msg = f"node {self.node_id!r} emitted to unknown output {port!r}"
            raise RuntimeError(msg) from None
        rows = batch.num_rows
        if rows == 0:
            return
        self.stats.items_out += rows
        if port == "out" or "out" not in self.targets:
            self.stats.rows_out += rows
        self.stats.batches_out += 1
        self.stats.by_port[port] = self.stats.by_port.get(port, 0) + rows
        if self.metrics is not None:
            self.metrics.items_out.labels(job=self.job, node=self.node_id).inc(rows)
        for channel in channels:
            await channel.put(batch)

    async def mark(self, mark: Mark) -> None:
        for channels in self.targets.values():
            for channel in channels:
                await channel.put_mark(mark)

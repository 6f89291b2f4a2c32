"""The three kinds of component a graph is made of, and what the runtime gives them.

- :class:`Provider`: produces batches (``pyarrow.Table``) until exhausted or stopped.
- :class:`Operator`: turns input batches into output batches on one or more named output
  ports; may keep state, run a periodic timer and flush on end of input.
- :class:`SinkComponent`: consumes batches; a batch is handed on when ``write`` returns.

Each component class declares a pydantic ``Params`` model (validated before anything runs,
errors name the node and field) and is constructed as ``Cls(node_id, params)``. The runtime
calls ``open(ctx)`` first and ``close()`` last, whatever happened in between.

Marks (:mod:`market_data_pipeline.marks`) travel behind batches: operators forward them
(:meth:`Operator.on_mark`, held by those that hold rows) and sinks commit before counting
them (:meth:`SinkComponent.commit`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, Protocol, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from market_data_pipeline.services import Services

if TYPE_CHECKING:
    from market_data_core import RateController
    from market_data_pipeline.marks import Mark
    from market_data_pipeline.metrics import PipelineMetrics

__all__ = [
    "Component",
    "Context",
    "Emit",
    "Extent",
    "NoParams",
    "NodeStats",
    "Operator",
    "P",
    "Params",
    "Provider",
    "SinkComponent",
]


class Params(BaseModel):
    """Base of every component's params: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoParams(Params):
    """For components without params."""


P = TypeVar("P", bound=BaseModel)


class Emit(Protocol):
    """Send a batch to every node connected to an output port (waits while they are full)."""

    async def __call__(self, batch: pa.Table, port: str = "out") -> None: ...

    async def mark(self, mark: Mark) -> None:
        """Send a mark behind the batches already sent, to every connected output."""
        ...


@dataclass(slots=True)
class NodeStats:
    """What one node did; the runtime shows it in the summary and in metrics."""

    items_in: int = 0
    items_out: int = 0
    """Rows emitted on every output (a resampler's late rows included)."""
    rows_out: int = 0
    """Rows emitted on the main output ``out`` (a resampler's bars), or on every output of
    a node whose outputs are peers (``hash_partition``, ``router``): the summary's ``out``."""
    batches_in: int = 0
    batches_out: int = 0
    by_port: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    busy_seconds: float = 0.0

    def count(self, name: str, n: int = 1) -> None:
        """A named counter: ``late``, ``dropped``, ``deduplicated``, ``pauses``, ``conflated``..."""
        self.counters[name] = self.counters.get(name, 0) + n


@dataclass(frozen=True, slots=True)
class Extent:
    """How far a provider is through a finite input, for a progress display: ``done`` of
    ``total`` ``unit`` (the rows of a synthetic day or of a Parquet file, the bytes of a CSV
    or NDJSON file read so far). ``total`` is ``None`` when the provider cannot know it up
    front: then only a rate and the time elapsed can be shown."""

    done: int
    total: int | None
    unit: Literal["rows", "bytes"] = "rows"

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], ``None`` when the total is not known."""
        if self.total is None:
            return None
        if self.total <= 0:
            return 1.0
        return min(max(self.done / self.total, 0.0), 1.0)


@dataclass(slots=True)
class Context:
    """What the runtime gives a component when it opens."""

    node_id: str
    job: str
    stats: NodeStats
    rate: RateController
    stopping: asyncio.Event
    services: Services = field(default_factory=Services)
    """What the job's nodes share (its stores, Redis URL, state directory...)."""
    paths: int = 0
    """Paths from this node to a sink: how many arrivals complete a mark it emits."""
    schema: pa.Schema | None = None
    """The columns of the batches that reach this node, when the graph tells (a provider's
    kind, a resampler's bars...; ``Component.output_schema``); ``None``: not known before
    a batch arrives. A sink that receives no rows can still write an empty file of them."""
    metrics: PipelineMetrics | None = None
    """The runtime's metrics, when it exports any (for a component's own metrics)."""

    def count(self, name: str, n: int = 1) -> None:
        self.stats.count(name, n)


class Component(Generic[P]):
    """Common to providers, operators and sinks.

    A subclass names its params model twice, for the type checker and for the registry::

        class Resample(Operator[ResampleParams]):
            Params = ResampleParams
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    description: ClassVar[str] = ""

    def __init__(self, node_id: str, params: P) -> None:
        self.node_id = node_id
        self.params = params
        self.ctx: Context | None = None

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the output ports (``out`` unless the component says otherwise)."""
        return ("out",)

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        """The columns this node emits on ``port`` when ``given`` reach it, if it can tell
        before running (the runtime fills ``Context.schema`` from it): by default what comes
        in goes out; providers and operators that make new columns say which."""
        return given

    async def open(self, ctx: Context) -> None:
        self.ctx = ctx

    async def close(self) -> None:
        """Release resources; called once, also after errors and cancellation."""

    @property
    def context(self) -> Context:
        if self.ctx is None:
            msg = f"node {self.node_id!r} is not open"
            raise RuntimeError(msg)
        return self.ctx

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.node_id!r})"


class Provider(Component[P]):
    """Produces batches. Subclasses implement :meth:`batches`.

    :meth:`run` asks the rate controller before each batch, so a provider pauses under hard
    backpressure and never drops (replay and synthetic); a stop ends the wait, and the
    batch it waited for is not emitted. A live provider that cannot pause its upstream
    overrides :meth:`run` to conflate and count what it conflated.
    """

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        """A provider makes its own columns: ``None`` unless it says which."""
        return None

    def batches(self) -> AsyncIterator[pa.Table]:
        raise NotImplementedError

    def extent(self) -> Extent | None:
        """How far through its input the provider is (see :class:`Extent`); ``None`` (the
        default) for a provider that cannot tell: a live feed, whose end is not known."""
        return None

    @property
    def restored(self) -> Mapping[str, int]:
        """Operator stamps saved with the last acknowledgement (see ``marks``), given back
        to the operators by the runtime after every node opened; empty by default."""
        return {}

    async def run(self, emit: Emit) -> None:
        ctx = self.context
        async for batch in self.batches():
            if ctx.stopping.is_set():
                break
            if batch.num_rows == 0:
                continue
            await ctx.rate.acquire(batch.num_rows)
            if ctx.stopping.is_set():  # stopped while waiting for the rate: not emitted
                break
            await emit(batch)


class Operator(Component[P]):
    """Turns batches into batches.

    ``timer_interval`` (seconds, wall clock) makes the runtime call :meth:`on_timer`
    periodically (idle-timeout closing, time-based flushing); ``None`` disables it.
    """

    timer_interval: float | None = None

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        raise NotImplementedError

    async def on_timer(self, emit: Emit) -> None:
        """Called every ``timer_interval`` seconds while the node runs."""

    async def finish(self, emit: Emit) -> None:
        """All inputs ended: emit whatever state is left (open windows, buffered rows)."""

    async def on_mark(self, mark: Mark, emit: Emit) -> None:
        """A mark arrived behind the batches processed so far. Forward it once nothing
        derived from those batches is held any more (at once, by default: an operator
        that keeps rows or windows must override this)."""
        await emit.mark(mark)

    def restore(self, stamp: int) -> None:
        """Take back the stamp this node put on the last acknowledged mark (a restart)."""


class SinkComponent(Component[P]):
    """Consumes batches."""

    @property
    def outputs(self) -> tuple[str, ...]:
        return ()

    async def write(self, batch: pa.Table) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        """All inputs ended: make everything written durable."""

    async def commit(self) -> None:
        """A mark arrived: make everything written so far durable before it counts (a sink
        that writes synchronously to durable storage has nothing to do)."""

"""Fakes and helpers for tests of graphs and components (public: users test with them too).

- :class:`TestingProvider`: emits given tables (or core models) in order, then ends.
- :class:`CollectingSink`: keeps every batch it receives, per node, in memory.
- :func:`registry_with_fakes`: a registry with both registered as ``testing_provider`` and
  ``collect``.
- :func:`run_operator`: feed batches through one operator, return what each port emitted.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel

from market_data_pipeline import records
from market_data_pipeline.backpressure import BackpressureController
from market_data_pipeline.components import (
    Context,
    NodeStats,
    Operator,
    Params,
    Provider,
    SinkComponent,
)
from market_data_pipeline.marks import Mark
from market_data_pipeline.registry import Registry
from market_data_pipeline.services import Services

__all__ = [
    "CollectingSink",
    "TestingProvider",
    "collect",
    "eventually",
    "registry_with_fakes",
    "run_operator",
]

_INPUTS: dict[str, list[pa.Table]] = {}
_OUTPUTS: dict[str, list[pa.Table]] = defaultdict(list)


class TestingProviderParams(Params):
    name: str
    """Key of the inputs given to :meth:`TestingProvider.feed`."""
    delay: float = 0.0
    """Seconds to wait between batches (to test timers and stops)."""


class TestingProvider(Provider[TestingProviderParams]):
    """Emits the tables fed under ``name``, one batch each, then ends."""

    __test__ = False  # not a pytest test class
    Params = TestingProviderParams
    description: ClassVar[str] = "Emits tables given by a test."

    @staticmethod
    def feed(name: str, batches: Iterable[pa.Table | Sequence[BaseModel]]) -> None:
        _INPUTS[name] = [
            b if isinstance(b, pa.Table) else records.from_models(list(b)) for b in batches
        ]

    async def batches(self) -> AsyncIterator[pa.Table]:
        for batch in _INPUTS.get(self.params.name, []):
            if self.params.delay:
                await asyncio.sleep(self.params.delay)
            yield batch


class CollectingSinkParams(Params):
    name: str | None = None
    """Key to collect under (default: the node id)."""


class CollectingSink(SinkComponent[CollectingSinkParams]):
    """Keeps every batch; read them with :func:`collect`."""

    Params = CollectingSinkParams
    description: ClassVar[str] = "Keeps batches in memory for tests."

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        _OUTPUTS[self.params.name or self.node_id].clear()

    async def write(self, batch: pa.Table) -> None:
        _OUTPUTS[self.params.name or self.node_id].append(batch)


def collect(name: str) -> pa.Table | None:
    """Everything a :class:`CollectingSink` received, as one table (``None`` if nothing)."""
    batches = _OUTPUTS.get(name) or []
    return pa.concat_tables(batches) if batches else None


def registry_with_fakes() -> Registry:
    registry = Registry()
    registry.register("testing_provider", TestingProvider)
    registry.register("collect", CollectingSink)
    return registry


class _Capture:
    def __init__(self) -> None:
        self.out: dict[str, list[pa.Table]] = defaultdict(list)
        self.marks: list[Mark] = []

    async def __call__(self, batch: pa.Table, port: str = "out") -> None:
        if batch.num_rows:
            self.out[port].append(batch)

    async def mark(self, mark: Mark) -> None:
        self.marks.append(mark)


async def run_operator(
    op: Operator[Any],
    batches: Iterable[pa.Table],
    *,
    finish: bool = True,
    services: Services | Mapping[str, Any] | None = None,
) -> tuple[dict[str, pa.Table], NodeStats]:
    """Open ``op``, feed it ``batches``, finish it; return each port's output and its stats."""
    stats = NodeStats()
    ctx = Context(
        node_id=op.node_id,
        job="test",
        stats=stats,
        rate=BackpressureController.unlimited(),
        stopping=asyncio.Event(),
        services=Services.of(services),
    )
    emit = _Capture()
    await op.open(ctx)
    try:
        for batch in batches:
            stats.items_in += batch.num_rows
            await op.process(batch, emit)
        if finish:
            await op.finish(emit)
    finally:
        await op.close()
    return {port: pa.concat_tables(tables) for port, tables in emit.out.items()}, stats


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` is true (polling: for state that has no event to wait on).

    Bound it with ``asyncio.timeout(...)`` around the call.
    """
    while not predicate():  # noqa: ASYNC110 - the state we wait for has no event
        await asyncio.sleep(0.001)

"""What ``mdp run`` shows of a job while it runs: percent, rate, ETA and time elapsed.

The percent comes from the providers themselves (:meth:`Provider.extent`): a synthetic
day knows its configured count, a replayed Parquet file its row count, a CSV or NDJSON file
its size on disk and the bytes read so far. A provider that cannot tell (a live feed) leaves
the total unknown: then only the rows, their rate and the time elapsed are shown. The rate
is rows emitted by the providers per second since the job started; the ETA is the time
elapsed scaled by what is left (``elapsed * (1 - f) / f``).

On a terminal it is a live display (rich's progress bar over the table of the nodes),
redrawn four times a second and gone when the job ends, then one line: what was done and in
how long. Elsewhere (a pipe, a CI log) it is a log record (``pipeline progress``, a JSON
line like the others there) every :data:`LINE_INTERVAL` seconds and one at the end, never
a carriage return.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from rich.console import Console, RenderableType
from rich.text import Text

from market_data_core.progress import LINE_INTERVAL, ProgressBar, Snapshot, duration
from market_data_pipeline.components import Extent, Provider

if TYPE_CHECKING:
    from market_data_pipeline.job import UnifiedRuntime
    from market_data_pipeline.runtime import GraphRuntime, RunResult

__all__ = ["LINE_INTERVAL", "JobProgress", "Snapshot", "duration"]

logger = structlog.get_logger(__name__)


class JobProgress:
    """Follows a ``UnifiedRuntime``'s current job; see the module's docstring."""

    def __init__(
        self,
        runtime: UnifiedRuntime,
        console: Console,
        *,
        nodes: Callable[[UnifiedRuntime], RenderableType] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.console = console
        self.clock = clock
        self._nodes = nodes
        self._started: float | None = None
        self._last = Snapshot(0, None, 0.0)
        self._providers: dict[str, Provider[Any]] = {}
        self._line_at = 0.0
        self._progress = ProgressBar(
            self.renderables, console=console, transient=True, refresh_per_second=4
        )
        self._task = self._progress.add_task("", total=None)

    @property
    def name(self) -> str:
        graph = self.runtime.graph
        return graph.name if graph is not None else ""

    def snapshot(self) -> Snapshot:
        """The job now (the last one seen once it ended: the runtime forgets its job)."""
        inner = self.runtime.current
        if inner is None:
            return self._last
        now = self.clock()
        if self._started is None:
            self._started = now
        self._providers = _providers(inner)
        rows = sum(inner.stats[node_id].items_out for node_id in self._providers)
        extents = [provider.extent() for provider in self._providers.values()]
        self._last = Snapshot(rows, _fraction(extents), now - self._started)
        return self._last

    @property
    def live(self) -> bool:
        return self._progress.redraws

    def __enter__(self) -> JobProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self) -> None:
        """Redraw (a terminal) or, every ``LINE_INTERVAL`` seconds, log a record."""
        snap = self.snapshot()
        if self.live:
            fraction = snap.fraction
            self._progress.update(
                self._task,
                description=self.name,
                total=None if fraction is None else 1.0,
                completed=fraction or 0.0,
            )
            return
        if self._started is not None and snap.elapsed - self._line_at >= LINE_INTERVAL:
            self._line_at = snap.elapsed
            logger.info("pipeline progress", job=self.name, **snap.fields())

    def finish(self, result: RunResult) -> None:
        """The last line: what was done, in how long (after the live display is gone)."""
        rows = sum(
            stats.items_out
            for node, stats in result.nodes.items()
            if result.kinds.get(node) == "provider"
        )
        last = self.runtime.last
        providers = self._providers or ({} if last is None else _providers(last))
        extents = [provider.extent() for provider in providers.values()]
        snap = Snapshot(rows, _fraction(extents), result.seconds)  # no providers: None
        state = str(result.state)
        if not self.live:
            fields = snap.fields() | {"eta_seconds": None}
            logger.info("pipeline progress", job=self.name, state=state, **fields)
            return
        line = f"{self.name}: {', '.join([state, *snap.parts(final=True)])}"
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def renderables(self, bar: RenderableType) -> list[RenderableType]:
        """The bar, the figures under it, and the table of the nodes."""
        figures = "  ".join(self._last.parts(percent=False))
        stats = Text(figures, no_wrap=True, overflow="ellipsis")
        below = [] if self._nodes is None else [self._nodes(self.runtime)]
        return [bar, stats, *below]


def _providers(inner: GraphRuntime) -> dict[str, Provider[Any]]:
    return {
        node_id: component
        for node_id, component in inner.components.items()
        if isinstance(component, Provider)
    }


def _fraction(extents: list[Extent | None]) -> float | None:
    """Of every provider's input, the part done: their sum where they count the same unit,
    else the mean of their fractions; ``None`` when one of them cannot tell."""
    known = [e for e in extents if e is not None and e.total is not None]
    if not extents or len(known) < len(extents):
        return None
    if len({e.unit for e in known}) == 1:
        total = sum(e.total or 0 for e in known)
        return 1.0 if total <= 0 else min(sum(e.done for e in known) / total, 1.0)
    fractions = [e.fraction or 0.0 for e in known]
    return sum(fractions) / len(fractions)

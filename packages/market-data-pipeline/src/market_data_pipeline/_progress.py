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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from market_data_pipeline.components import Extent, Provider

if TYPE_CHECKING:
    from market_data_pipeline.runtime import RunResult
    from market_data_pipeline.unified import UnifiedRuntime

__all__ = ["LINE_INTERVAL", "JobProgress", "Snapshot", "duration"]

logger = structlog.get_logger(__name__)

LINE_INTERVAL: Final = 10.0
"""Seconds between two progress records when stderr is not a terminal."""


def duration(seconds: float) -> str:
    """``0.8 s``, ``42.0 s`` under a minute, else ``h:mm:ss``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The job at one instant: rows the providers emitted, the fraction of their input
    done (``None``: not known), seconds elapsed."""

    rows: int
    fraction: float | None
    elapsed: float

    @property
    def rate(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the average pace so far; ``None`` until there is a pace."""
        if self.fraction is None or self.fraction <= 0 or self.elapsed <= 0:
            return None
        return self.elapsed * (1 - self.fraction) / self.fraction

    def parts(self, *, final: bool = False, percent: bool = True) -> list[str]:
        """``45%``, ``105,000 rows``, ``52,000 rows/s``, ``ETA 2.1 s``, ``elapsed 1.7 s``:
        the ETA only while running and with a known total, the percent only with one."""
        parts = [] if self.fraction is None or not percent else [f"{self.fraction:.0%}"]
        parts += [f"{self.rows:,} rows", f"{self.rate:,.0f} rows/s"]
        eta = self.eta
        if not final and eta is not None:
            parts.append(f"ETA {duration(eta)}")
        parts.append(f"elapsed {duration(self.elapsed)}")
        return parts

    def fields(self) -> dict[str, Any]:
        """The same as the fields of a log record (numbers; ``None``: not known)."""
        eta = self.eta
        return {
            "percent": None if self.fraction is None else round(self.fraction * 100, 1),
            "rows": self.rows,
            "rows_per_second": round(self.rate),
            "eta_seconds": None if eta is None else round(eta, 1),
            "elapsed_seconds": round(self.elapsed, 1),
        }


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
        self.live = console.is_terminal and not console.is_dumb_terminal
        self._nodes = nodes
        self._started: float | None = None
        self._last = Snapshot(0, None, 0.0)
        self._providers: dict[str, Provider[Any]] = {}
        self._line_at = 0.0
        self._progress = _Bar(self, console=console, transient=True, refresh_per_second=4)
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
        self._providers = {
            node_id: component
            for node_id, component in inner.components.items()
            if isinstance(component, Provider)
        }
        rows = sum(inner.stats[node_id].items_out for node_id in self._providers)
        extents = [provider.extent() for provider in self._providers.values()]
        self._last = Snapshot(rows, _fraction(extents), now - self._started)
        return self._last

    def __enter__(self) -> JobProgress:
        if self.live:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live:
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
        extents = [provider.extent() for provider in self._providers.values()]
        snap = Snapshot(rows, _fraction(extents), result.seconds)  # no providers seen: None
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


class _Bar(Progress):
    """rich's progress bar (name, bar, percent), with the figures and the nodes below."""

    def __init__(self, owner: JobProgress, **kwargs: Any) -> None:
        self.owner = owner  # before rich's __init__, which renders once
        super().__init__(
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            TaskProgressColumn(),
            expand=True,
            **kwargs,
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        table: Table = self.make_tasks_table(self.tasks)
        yield from self.owner.renderables(table)


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

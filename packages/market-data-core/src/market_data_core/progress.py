"""What the command lines show of finite work while it runs: percent, rate, ETA, elapsed.

One home for ``mdp run`` (a job) and ``mds ingest`` (files): :class:`Snapshot` is the work
at one instant (rows done, the fraction of a known total, seconds elapsed) and says it in
words (``45%, 105,000 rows, 52,000 rows/s, ETA 2.1 s, elapsed 1.7 s``) or as log fields;
:class:`ProgressBar` is rich's bar (name, bar, percent) with whatever its owner shows under
it. The ETA is the time elapsed scaled by what is left (``elapsed * (1 - f) / f``).
Off a terminal the command lines print a line (or a log record) every
:data:`LINE_INTERVAL` seconds instead, never a carriage return.

Needs rich (the command lines' dependency; core's ``console`` extra).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from rich.console import RenderableType
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

__all__ = ["LINE_INTERVAL", "ProgressBar", "Snapshot", "duration"]

LINE_INTERVAL: Final = 10.0
"""Seconds between two progress lines (or log records) when stderr is not a terminal."""


def duration(seconds: float) -> str:
    """``0.8 s``, ``42.0 s`` under a minute, else ``h:mm:ss``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Work at one instant: ``rows`` done, the ``fraction`` of its total done (``None``:
    the total is not known), seconds ``elapsed``."""

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
        rows = f"{self.rows:,} row" if self.rows == 1 else f"{self.rows:,} rows"
        parts += [rows, f"{self.rate:,.0f} rows/s"]
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


class ProgressBar(Progress):
    """rich's progress bar (name, bar, percent) with what ``below(bar)`` returns: the bar
    itself first, then the figures, a table..."""

    def __init__(
        self, below: Callable[[RenderableType], list[RenderableType]], **kwargs: Any
    ) -> None:
        self.below = below  # before rich's __init__, which renders once
        super().__init__(
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            TaskProgressColumn(),
            expand=True,
            **kwargs,
        )

    @property
    def redraws(self) -> bool:
        """Whether its console is a terminal that redraws; elsewhere (a pipe, a CI log)
        the bar never starts and its owner logs a line now and then instead."""
        return self.console.is_terminal and not self.console.is_dumb_terminal

    def start(self) -> None:
        if self.redraws:
            super().start()

    def stop(self) -> None:
        if self.redraws:
            super().stop()

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from self.below(self.make_tasks_table(self.tasks))

"""What ``mds ingest`` shows while it reads files: percent, rate, ETA and time elapsed.

The percent comes from the file (:class:`~market_data_store.files.ReadProgress`: bytes read
of its size on disk, or rows read of a Parquet file's row count); the rate is rows read per
second; the ETA the time elapsed scaled by what is left (``elapsed * (1 - f) / f``). On a
terminal, rich's progress bar with the figures under it, redrawn and gone at the end of each
file; elsewhere (a pipe, a CI log) a plain line every :data:`LINE_INTERVAL` seconds, never
a carriage return. Each file ends with one line: how many rows, in how long.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console, RenderableType
from rich.text import Text

from market_data_core.progress import LINE_INTERVAL, ProgressBar, Snapshot, duration

if TYPE_CHECKING:
    from market_data_store.files import ReadProgress

__all__ = ["LINE_INTERVAL", "FileProgress", "duration"]


class FileProgress:
    """One file being read: ``update(rows)`` as rows are read, ``finish(rows)`` at its end."""

    def __init__(
        self,
        console: Console,
        name: str,
        read: ReadProgress,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.name = name
        self.read = read
        self.clock = clock
        self.started = clock()
        self.rows = 0
        self._line_at = 0.0
        self._bar = ProgressBar(
            self.renderables, console=console, transient=True, refresh_per_second=4
        )
        self._task = self._bar.add_task(name, total=None)

    @property
    def live(self) -> bool:
        return self._bar.redraws

    def __enter__(self) -> FileProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.stop()

    def figures(self, *, percent: bool = True, final: bool = False) -> list[str]:
        elapsed = self.clock() - self.started
        return Snapshot(self.rows, self.read.fraction, elapsed).parts(percent=percent, final=final)

    def update(self, rows: int) -> None:
        self.rows = rows
        if self.live:
            fraction = self.read.fraction
            total = None if fraction is None else 1.0
            self._bar.update(self._task, total=total, completed=fraction or 0.0)
            return
        elapsed = self.clock() - self.started
        if elapsed - self._line_at >= LINE_INTERVAL:
            self._line_at = elapsed
            self._print(self.figures())

    def finish(self, rows: int) -> None:
        """The file's last line (after the bar is gone): its rows and how long it took."""
        self.rows = rows
        self._print(self.figures(final=True))

    def _print(self, parts: list[str]) -> None:
        line = f"{self.name}: {', '.join(parts)}"
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def renderables(self, bar: RenderableType) -> list[RenderableType]:
        figures = "  ".join(self.figures(percent=False))
        return [bar, Text(figures, no_wrap=True, overflow="ellipsis")]

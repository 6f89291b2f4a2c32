"""Print batches (``stdout``) or discard them (``null``).

``stdout`` shows each batch as a table (rich) or as NDJSON lines, at most ``max_rows`` rows
per batch: for looking at a pipeline, not for moving data. ``null`` drops everything and
counts rows: the sink of benchmarks, so that they measure the pipeline, not the output.
"""

from __future__ import annotations

import sys
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field
from rich.console import Console
from rich.table import Table

from market_data_pipeline import records
from market_data_pipeline.components import Context, NoParams, Params, SinkComponent
from market_data_pipeline.sinks.files import iso_text, ndjson_lines

__all__ = ["NullSink", "StdoutSink", "StdoutSinkParams"]

_PIPED_WIDTH = 1000


class StdoutSinkParams(Params):
    format: Literal["table", "ndjson"] = "table"
    max_rows: int | None = Field(default=20, ge=1, description="Rows shown per batch (None: all).")


class StdoutSink(SinkComponent[StdoutSinkParams]):
    """Prints each batch to stdout as a table or NDJSON."""

    Params = StdoutSinkParams
    description: ClassVar[str] = "Prints batches to stdout (table or NDJSON)."

    def __init__(self, node_id: str, params: StdoutSinkParams) -> None:
        super().__init__(node_id, params)
        self.console: Console | None = None

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        self.console = _console()

    async def write(self, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        shown = batch if self.params.max_rows is None else batch.slice(0, self.params.max_rows)
        hidden = batch.num_rows - shown.num_rows
        if self.params.format == "ndjson":
            out = sys.stdout
            out.writelines(line + "\n" for line in ndjson_lines(shown))
            out.flush()
            return
        console = self.console or _console()
        console.print(self._table(shown, batch.num_rows, hidden))

    def _table(self, shown: pa.Table, total: int, hidden: int) -> Table:
        kind = records.kind_of(shown)
        title = f"{self.node_id}: {total} {kind or 'rows'}"
        caption = f"... {hidden} more rows" if hidden else None
        table = Table(title=title, caption=caption)
        for name in shown.column_names:
            table.add_column(name)
        columns = [
            iso_text(column).to_pylist()
            if pa.types.is_timestamp(column.type)
            else column.to_pylist()
            for column in shown.columns
        ]
        for row in zip(*columns, strict=True):
            table.add_row(*("" if v is None else str(v) for v in row))
        return table


def _console() -> Console:
    """A console on stdout: as wide as the terminal, or as wide as the table when piped
    (so that values are never cut in logs and files)."""
    out = sys.stdout
    width = None if out.isatty() else _PIPED_WIDTH
    return Console(file=out, width=width)


class NullSink(SinkComponent[NoParams]):
    """Discards batches and counts their rows (for benchmarks)."""

    Params = NoParams
    description: ClassVar[str] = "Discards batches (counts rows): for benchmarks."

    def __init__(self, node_id: str, params: NoParams) -> None:
        super().__init__(node_id, params)
        self.rows = 0
        self.batches = 0

    async def write(self, batch: pa.Table) -> None:
        self.rows += batch.num_rows
        self.batches += 1

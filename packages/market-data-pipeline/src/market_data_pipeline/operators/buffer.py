"""``buffer``: size/time batching in front of a slow consumer, with an explicit overflow policy.

Rows wait in the buffer until ``max_rows`` are pending (a batch of exactly ``max_rows`` goes
out) or, with ``max_delay``, until the timer fires every ``max_delay`` seconds (wall clock;
everything pending goes out, in batches of at most ``max_rows``). At the end of input
everything pending goes out. Order is preserved; rows of different schemas never share a
batch.

Emission runs in a background task, so the buffer keeps accepting input while its
downstream is full. At most ``capacity`` rows wait (default ``10 * max_rows``; not counting
the one batch being handed on); when a batch would go past it, ``overflow`` decides:

- ``block`` (default): take what fits and wait for room (backpressure upstream; no loss);
- ``drop_oldest``: evict the oldest pending rows, counted as ``dropped``;
- ``error``: fail with :class:`BufferOverflowError` naming the node.

A mark (:mod:`market_data_pipeline.marks`) goes out behind the last row that came in before
it, once that row has left the buffer (emitted, or dropped under ``drop_oldest``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from enum import StrEnum
from typing import ClassVar

import pyarrow as pa
from pydantic import Field

from market_data_pipeline import records
from market_data_pipeline.components import Context, Emit, Operator, Params
from market_data_pipeline.exceptions import BufferOverflowError
from market_data_pipeline.marks import Mark

__all__ = ["Buffer", "BufferOverflowError", "BufferParams", "Overflow"]


class Overflow(StrEnum):
    """What a full buffer does with more input."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    ERROR = "error"


class BufferParams(Params):
    max_rows: int = Field(default=1000, ge=1)
    """Emit a batch once this many rows are pending."""
    max_delay: float | None = Field(default=1.0, gt=0)
    """Seconds (wall clock) between flushes of whatever is pending; ``None``: size only."""
    capacity: int | None = Field(default=None, ge=1)
    """Most rows pending while downstream is slow (default ``10 * max_rows``)."""
    overflow: Overflow = Overflow.BLOCK


class Buffer(Operator[BufferParams]):
    """Batches rows by size and time; decouples input from a slow downstream."""

    Params = BufferParams
    description: ClassVar[str] = "Batch rows by size/time with a bounded, explicit overflow."

    def __init__(self, node_id: str, params: BufferParams) -> None:
        super().__init__(node_id, params)
        self.capacity = params.capacity or 10 * params.max_rows
        if self.capacity < params.max_rows:
            msg = f"capacity ({self.capacity}) must be at least max_rows ({params.max_rows})"
            raise ValueError(msg)
        self.timer_interval = params.max_delay
        self._pending: deque[pa.Table] = deque()
        self._rows = 0
        self._flush = False
        self._finishing = False
        self._emit: Emit | None = None
        self._work = asyncio.Event()
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._entered = 0
        """Rows given to the buffer so far."""
        self._left = 0
        """Rows that left it so far (taken for emission, evicted or dropped)."""
        self._marks: deque[tuple[int, Mark]] = deque()
        """Held marks, each with the rows that must leave before it goes out."""

    @property
    def pending(self) -> int:
        """Rows waiting to be emitted."""
        return self._rows

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        self._task = asyncio.create_task(self._run(), name=f"{self.node_id}-emitter")
        self._task.add_done_callback(self._wake)

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        self._emit = emit
        self._check_emitter()
        if batch.num_rows == 0:
            return
        self._entered += batch.num_rows
        if self.params.overflow is Overflow.BLOCK:
            await self._put_blocking(batch)
        elif self.params.overflow is Overflow.DROP_OLDEST:
            self._put_dropping(batch)
        else:
            if self._rows + batch.num_rows > self.capacity:
                raise BufferOverflowError(
                    self.node_id,
                    capacity=self.capacity,
                    pending=self._rows,
                    incoming=batch.num_rows,
                )
            self._append(batch)

    async def on_mark(self, mark: Mark, emit: Emit) -> None:
        self._emit = emit
        self._check_emitter()
        self._marks.append((self._entered, mark))
        self._work.set()

    async def on_timer(self, emit: Emit) -> None:
        self._emit = emit
        if self._rows:
            self._flush = True
            self._work.set()

    async def finish(self, emit: Emit) -> None:
        """Emit everything pending, then return (re-raising what the emitter raised)."""
        self._emit = emit
        self._finishing = True
        self._work.set()
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: it was raised to the runtime already
        await super().close()

    # -- input side ---------------------------------------------------------------------

    async def _put_blocking(self, batch: pa.Table) -> None:
        offset = 0
        while offset < batch.num_rows:
            while self._rows >= self.capacity:
                self._check_emitter()
                self._room.clear()
                await self._room.wait()
            take = min(self.capacity - self._rows, batch.num_rows - offset)
            self._append(batch.slice(offset, take))
            offset += take

    def _put_dropping(self, batch: pa.Table) -> None:
        if batch.num_rows > self.capacity:
            self.context.count("dropped", batch.num_rows - self.capacity)
            self._left += batch.num_rows - self.capacity
            batch = batch.slice(batch.num_rows - self.capacity)
        self._append(batch)
        excess = self._rows - self.capacity
        if excess > 0:
            self.context.count("dropped", excess)
            self._evict(excess)

    def _append(self, batch: pa.Table) -> None:
        self._pending.append(batch)
        self._rows += batch.num_rows
        if self._rows >= self.params.max_rows:
            self._work.set()

    def _evict(self, rows: int) -> None:
        self._left += rows
        while rows:
            head = self._pending[0]
            if head.num_rows <= rows:
                self._pending.popleft()
                rows -= head.num_rows
                self._rows -= head.num_rows
            else:
                self._pending[0] = head.slice(rows)
                self._rows -= rows
                rows = 0

    def _check_emitter(self) -> None:
        task = self._task
        if task is None:
            msg = f"node {self.node_id!r} is not open"
            raise RuntimeError(msg)
        if task.done():
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
            msg = f"node {self.node_id!r}: the buffer's emitter stopped"
            raise RuntimeError(msg)

    # -- output side --------------------------------------------------------------------

    def _ready(self) -> bool:
        if self._rows >= self.params.max_rows:
            return True
        if self._marks and self._marks[0][0] <= self._left:
            return True
        return self._finishing or (self._flush and self._rows > 0)

    async def _run(self) -> None:
        """The emitter: hands batches on as they become due, until finished and empty."""
        while True:
            while not self._ready():
                self._work.clear()
                await self._work.wait()
            assert self._emit is not None, "process() or on_mark() gave emit"
            while self._marks and self._marks[0][0] <= self._left:
                await self._emit.mark(self._marks.popleft()[1])
            if not self._rows:
                if self._finishing:
                    return
                continue
            batch = self._take()
            if not self._rows:
                self._flush = False
            self._room.set()
            assert self._emit is not None, "rows are pending, so process() gave emit"
            await self._emit(batch)

    def _take(self) -> pa.Table:
        """Up to ``max_rows`` rows from the front, all of the same schema."""
        want = min(self.params.max_rows, self._rows)
        parts: list[pa.Table] = []
        while want and self._pending:
            head = self._pending[0]
            if parts and not head.schema.equals(parts[0].schema):
                break
            if head.num_rows <= want:
                parts.append(self._pending.popleft())
            else:
                parts.append(head.slice(0, want))
                self._pending[0] = head.slice(want)
            want -= parts[-1].num_rows
            self._rows -= parts[-1].num_rows
            self._left += parts[-1].num_rows
        return records.concat(parts)

    def _wake(self, _task: asyncio.Task[None]) -> None:
        """When the emitter ends (or fails), wake whoever waits for room."""
        self._room.set()

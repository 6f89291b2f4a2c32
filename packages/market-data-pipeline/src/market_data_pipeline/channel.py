"""Bounded channels of batches between nodes, with end-of-stream after the last producer.

A node with several input edges reads one channel that all its producers write to
(fan-in); a producer with several output edges writes the same (immutable) batch to each
target's channel (fan-out). ``put`` waits while the channel is full: that wait is the
backpressure between nodes.

Besides batches, a channel carries marks (:class:`Mark`): points in a provider's stream that
travel behind the batches before them (see :mod:`market_data_pipeline.marks`).
"""

from __future__ import annotations

import asyncio
from typing import Final

import pyarrow as pa

from market_data_pipeline.marks import Mark

__all__ = ["END", "Channel"]


class _End:
    def __repr__(self) -> str:
        return "END"


END: Final = _End()


class Channel:
    """A bounded queue of batches that ends once every producer has closed it."""

    def __init__(self, name: str, *, capacity: int, producers: int) -> None:
        if capacity < 1:
            msg = f"channel capacity must be >= 1, not {capacity}"
            raise ValueError(msg)
        self.name = name
        self.capacity = capacity
        self._queue: asyncio.Queue[pa.Table | Mark | _End] = asyncio.Queue(maxsize=capacity)
        self._open_producers = producers
        self.rows = 0
        """Rows waiting in the channel."""
        self.putting = 0
        """Rows of batches whose producers wait for space (not in the channel yet)."""

    @property
    def depth(self) -> int:
        """Batches waiting."""
        return self._queue.qsize()

    async def put(self, batch: pa.Table) -> None:
        self.putting += batch.num_rows
        try:
            await self._queue.put(batch)
        finally:
            self.putting -= batch.num_rows
        self.rows += batch.num_rows

    async def put_mark(self, mark: Mark) -> None:
        """Queue a mark behind the batches already put (it holds no rows)."""
        await self._queue.put(mark)

    async def close(self) -> None:
        """One producer is done; after the last one, readers get ``END``."""
        self._open_producers -= 1
        if self._open_producers == 0:
            await self._queue.put(END)

    async def get(self) -> pa.Table | Mark | _End:
        item = await self._queue.get()
        if isinstance(item, pa.Table):
            self.rows -= item.num_rows
        return item

    def get_nowait(self) -> pa.Table | Mark | _End:
        item = self._queue.get_nowait()
        if isinstance(item, pa.Table):
            self.rows -= item.num_rows
        return item

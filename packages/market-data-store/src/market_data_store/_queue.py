"""The write coordinator's bounded queue of records (private).

A deque of chunks (``market_data_store.chunks``) with a capacity counted in records and two
wake-up signals: records arrived (for workers) and space freed (for producers that block). A
chunk is what a producer submitted: a ``ModelChunk`` of core models, or an ``ArrowChunk`` table
that stays columnar all the way to the backend (sliced, never copied, when a batch takes part
of it). It never holds
more than ``capacity`` records; what to do when a batch does not fit is the caller's choice
(wait, evict, refuse). Every method runs without awaiting between its check and its change,
so on one event loop no wake-up is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from market_data_store.chunks import Batch, Chunk

__all__ = ["Signal", "WriteQueue"]


class Signal:
    """Wakes every task waiting when ``notify()`` is called; later waiters wait for the next."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, within: float | None = None) -> None:
        """Return on the next ``notify()``, or after ``within`` seconds."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await event.wait()


class WriteQueue:
    """A bounded FIFO of record chunks; closed until ``open()`` is called."""

    __slots__ = ("_arrived", "_closed", "_hurry", "_items", "_size", "_space", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Chunk] = deque()
        self._size = 0
        self._closed = True
        self._hurry = 0
        self._arrived = Signal()
        self._space = Signal()

    def __len__(self) -> int:
        return self._size

    @property
    def free(self) -> int:
        return self.capacity - self._size

    @property
    def closed(self) -> bool:
        return self._closed

    def open(self) -> None:
        """Accept records again (signals are made anew for the running event loop)."""
        self._arrived = Signal()
        self._space = Signal()
        self._closed = False

    def close(self) -> None:
        """Wake everyone: workers stop lingering and return what is left, blocked producers
        see ``closed``. Records already queued stay until taken."""
        self._closed = True
        self._arrived.notify()
        self._space.notify()

    def hurry(self) -> None:
        """Stop lingering (someone waits for a flush) until as many ``relax()`` calls."""
        self._hurry += 1
        self._arrived.notify()

    def relax(self) -> None:
        self._hurry -= 1

    def put(self, records: Batch) -> None:
        """Append ``records``; the caller has checked that they fit."""
        if len(records) > self.free:
            msg = f"{len(records)} records do not fit in {self.free} free slots"
            raise ValueError(msg)
        self._append(records)
        self._arrived.notify()

    def _append(self, records: Batch) -> None:
        self._items.extend(records.chunks)
        self._size += len(records)

    def put_evicting(self, records: Batch) -> int:
        """Append ``records``, evicting the oldest records to make room; return how many
        were evicted (queued ones first, then the oldest of ``records`` when the batch alone
        exceeds the capacity)."""
        overflow = self._size + len(records) - self.capacity
        if overflow > 0:
            from_queue = min(overflow, self._size)
            self._pop(from_queue, notify=False)
            records = records[overflow - from_queue :]
        self._append(records)
        self._arrived.notify()
        return max(overflow, 0)

    async def wait_for_space(self) -> None:
        """Return when records were taken (or the queue closed); check ``free`` again."""
        if self._closed or self.free > 0:
            return
        await self._space.wait()

    async def take(self, max_items: int, linger: float) -> Batch:
        """The oldest records, at most ``max_items``: waits for the first one, then up to
        ``linger`` seconds for the batch to fill (no lingering once closed or while hurried).
        An empty list
        means closed and empty."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._size:
                if self._closed:
                    return Batch()
                await self._arrived.wait()
            deadline = loop.time() + linger
            while self._size < max_items and not (self._closed or self._hurry):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._arrived.wait(remaining)
            if self._size:
                return self._pop(max_items)

    def take_all(self) -> Batch:
        """Everything queued, at once."""
        return self._pop(self._size)

    def _pop(self, count: int, *, notify: bool = True) -> Batch:
        """The oldest ``count`` records (fewer when fewer are queued); the chunk that holds
        the last of them is split, its rest stays first in the queue."""
        items = self._items
        parts: list[Chunk] = []
        wanted = min(count, self._size)
        while wanted:
            chunk = items.popleft()
            if len(chunk) > wanted:
                items.appendleft(chunk.part(wanted, len(chunk)))
                chunk = chunk.part(0, wanted)
            parts.append(chunk)
            wanted -= len(chunk)
            self._size -= len(chunk)
        if notify:
            self._space.notify()
        return Batch(parts)

"""The write coordinator's bounded queue of records (private).

A deque with a capacity and two wake-up signals: records arrived (for workers) and space
freed (for producers that block). It never holds more than ``capacity`` records; what to do
when a batch does not fit is the caller's choice (wait, evict, refuse). Every method runs
without awaiting between its check and its change, so on one event loop no wake-up is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence

from market_data_store.backends.base import Record

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
    """A bounded FIFO of records; closed until ``open()`` is called."""

    __slots__ = ("_arrived", "_closed", "_hurry", "_items", "_space", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Record] = deque()
        self._closed = True
        self._hurry = 0
        self._arrived = Signal()
        self._space = Signal()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def free(self) -> int:
        return self.capacity - len(self._items)

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

    def put(self, records: Sequence[Record]) -> None:
        """Append ``records``; the caller has checked that they fit."""
        if len(records) > self.free:
            msg = f"{len(records)} records do not fit in {self.free} free slots"
            raise ValueError(msg)
        self._items.extend(records)
        self._arrived.notify()

    def put_evicting(self, records: Sequence[Record]) -> int:
        """Append ``records``, evicting the oldest records to make room; return how many
        were evicted (queued ones first, then the oldest of ``records`` when the batch alone
        exceeds the capacity)."""
        overflow = len(self._items) + len(records) - self.capacity
        if overflow > 0:
            from_queue = min(overflow, len(self._items))
            for _ in range(from_queue):
                self._items.popleft()
            records = records[overflow - from_queue :]
        self._items.extend(records)
        self._arrived.notify()
        return max(overflow, 0)

    async def wait_for_space(self) -> None:
        """Return when records were taken (or the queue closed); check ``free`` again."""
        if self._closed or self.free > 0:
            return
        await self._space.wait()

    async def take(self, max_items: int, linger: float) -> list[Record]:
        """The oldest records, at most ``max_items``: waits for the first one, then up to
        ``linger`` seconds for the batch to fill (no lingering once closed or while hurried).
        An empty list
        means closed and empty."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                if self._closed:
                    return []
                await self._arrived.wait()
            deadline = loop.time() + linger
            while len(self._items) < max_items and not (self._closed or self._hurry):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await self._arrived.wait(remaining)
            if self._items:
                return self._pop(max_items)

    def take_all(self) -> list[Record]:
        """Everything queued, at once."""
        return self._pop(len(self._items))

    def _pop(self, count: int) -> list[Record]:
        items = self._items
        batch = [items.popleft() for _ in range(min(count, len(items)))]
        self._space.notify()
        return batch

"""Marks: acknowledge a source only after what it fed has been committed downstream.

A provider that can be asked to re-deliver (the ``redis_stream`` provider: a consumer
group's pending entries) emits a :class:`Mark` after each batch it hands on. The mark
travels behind that batch through every path of the graph:

- a stateless operator forwards it as soon as it has processed the batches before it;
- an operator that holds rows (event-time windows, resampling, ``buffer``) holds the mark
  until everything derived from the rows before it has been emitted: a windowing operator
  until every window those rows touched is *purged* (past ``end + allowed_lateness``, so
  it will never be emitted again), a buffer until those rows left it;
- a sink makes everything written before the mark durable (:meth:`SinkComponent.commit`:
  the store's write queue flushed) and then counts the mark as arrived.

A mark is *complete* once it has arrived at the end of every path from its provider to a
sink (fan-out and diamonds count each path). Then, and only then, the provider
acknowledges the entries before it. A worker killed at any point therefore leaves every
entry whose bars are not committed unacknowledged, to be delivered again (Flink's
checkpoint barriers, with nothing to snapshot but a watermark).

The watermark: a windowing operator stamps each mark it forwards with its latest event
time (``stamps``); the provider stores the stamps with the acknowledgement, and a worker
that restarts from them gives each operator its stamp back (:meth:`Operator.restore`).
Rows of re-delivered entries whose windows were purged before the crash are then late
again, as they were the first time, instead of opening a partial window whose bar would
overwrite the complete one already stored. Rows delivered twice are harmless: the store
upserts.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Mark"]


class Mark:
    """A point in one provider's stream; complete once it reached the end of every path."""

    __slots__ = ("_done", "_remaining", "stamps", "token")

    def __init__(self, token: Any, paths: int) -> None:
        self.token = token
        """What the provider acknowledges once the mark is complete (e.g. entry ids)."""
        self.stamps: dict[str, int] = {}
        """Operator node id -> latest event time (nanoseconds) when it forwarded the mark."""
        self._remaining = paths
        self._done = asyncio.Event()
        if paths <= 0:
            self._done.set()

    @property
    def complete(self) -> bool:
        return self._done.is_set()

    def arrive(self) -> None:
        """One path's sink committed everything before the mark."""
        if self._remaining > 0:
            self._remaining -= 1
            if self._remaining == 0:
                self._done.set()

    async def wait(self) -> None:
        await self._done.wait()

    def __repr__(self) -> str:
        return f"Mark({self.token!r}, remaining={self._remaining})"

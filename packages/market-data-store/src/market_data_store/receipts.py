"""What became of the records of one ``submit_many`` call: its ``WriteReceipt``.

The write coordinator numbers the records it accepts in order (their *positions*) and
settles them by position ranges: a batch written, a record the database refused, what a
stop dead-lettered. A receipt covers the positions of its call's records: one range, or
several when a blocking call was queued in parts between other callers' records. The
``Ledger`` maps each settled range back to the receipts it touches, so that a caller can
wait for its own records, and learn their fate, without waiting for anyone else's::

    receipt = await coordinator.submit_many(trades)
    await receipt.wait()
    if not receipt.stored:        # some were dead-lettered, refused or dropped
        ...

Every record of a receipt ends in exactly one of ``written``, ``dead_lettered``,
``failed`` or ``dropped`` (the coordinator's own counters, per call). ``refused`` lists the
records the database refused as bad data (``InvalidValueError``), each isolated from its
batch-mates and dead-lettered (else failed), with the index in the call and the reason.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

__all__ = ["Outcome", "RefusedRecord", "WriteReceipt"]

_COMPACT_AFTER = 1024
"""Settled segments at the head of the ledger beyond which it is compacted."""


class Outcome(StrEnum):
    """Where settled records went."""

    WRITTEN = "written"
    DEAD_LETTERED = "dead_lettered"
    FAILED = "failed"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class RefusedRecord:
    """A record the database refused: its index in the ``submit_many`` call, and why."""

    index: int
    reason: str


class WriteReceipt:
    """The fate of one call's records; ``await receipt.wait()`` until all are settled."""

    __slots__ = ("_done", "dead_lettered", "dropped", "failed", "refused", "total", "written")

    def __init__(self, total: int) -> None:
        self.total = total
        self.written = self.dead_lettered = self.failed = self.dropped = 0
        self.refused: list[RefusedRecord] = []
        """In index order."""
        self._done = asyncio.Event()
        if total == 0:
            self._done.set()

    @property
    def settled(self) -> int:
        return self.written + self.dead_lettered + self.failed + self.dropped

    @property
    def done(self) -> bool:
        """Every record is settled."""
        return self.settled >= self.total

    @property
    def stored(self) -> bool:
        """Every record was written to the database (nothing dead-lettered, refused or lost)."""
        return self.written == self.total

    async def wait(self) -> Self:
        """Return once every record is settled (it waits as long as that takes: an outage
        held by the coordinator holds it too; bound it with ``asyncio.timeout``)."""
        await self._done.wait()
        return self

    def add(self, outcome: Outcome, count: int) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + count)
        if self.done:
            self._done.set()

    def shrink(self, total: int) -> None:
        """Only ``total`` records of the call were accepted (it raised part way)."""
        self.total = total
        if self.done:
            self._done.set()

    def __repr__(self) -> str:
        return (
            f"WriteReceipt(total={self.total}, written={self.written}, "
            f"dead_lettered={self.dead_lettered}, failed={self.failed}, "
            f"dropped={self.dropped}, refused={len(self.refused)})"
        )


@dataclass(slots=True)
class _Segment:
    start: int
    end: int
    receipt: WriteReceipt
    offset: int
    """The index in its call of the record at ``start``."""


def _index(refused: RefusedRecord) -> int:
    return refused.index


class Ledger:
    """Segments of positions, in position order, each with its receipt (private to the
    coordinator). Settling costs a binary search plus the segments a range touches."""

    __slots__ = ("_head", "_segments", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._segments: list[_Segment] = []
        self._head = 0

    def add(self, start: int, count: int, receipt: WriteReceipt, offset: int) -> None:
        """Positions ``[start, start + count)`` are records ``offset...`` of ``receipt``;
        ``start`` is above every position added before."""
        self._starts.append(start)
        self._segments.append(_Segment(start, start + count, receipt, offset))

    def settle(self, start: int, count: int, outcome: Outcome) -> None:
        """Positions ``[start, start + count)`` went to ``outcome``."""
        end = start + count
        for segment in self._touching(start, end):
            segment.receipt.add(outcome, min(end, segment.end) - max(start, segment.start))
        self._compact()

    def refuse(self, position: int, reason: str, outcome: Outcome) -> None:
        """The record at ``position`` was refused by the database and went to ``outcome``."""
        for segment in self._touching(position, position + 1):
            index = segment.offset + position - segment.start
            refused = RefusedRecord(index, reason)
            bisect.insort(segment.receipt.refused, refused, key=_index)
        self.settle(position, 1, outcome)

    def boundaries(self, start: int, end: int) -> list[int]:
        """Positions strictly inside ``(start, end)`` where one call's records begin."""
        low = bisect.bisect_right(self._starts, start, lo=self._head)
        high = bisect.bisect_left(self._starts, end, lo=low)
        return self._starts[low:high]

    def _touching(self, start: int, end: int) -> list[_Segment]:
        first = max(bisect.bisect_right(self._starts, start, lo=self._head) - 1, self._head)
        touched = []
        for segment in self._segments[first:]:
            if segment.start >= end:
                break
            if segment.end > start:
                touched.append(segment)
        return touched

    def _compact(self) -> None:
        segments = self._segments
        while self._head < len(segments) and segments[self._head].receipt.done:
            self._head += 1
        if self._head >= _COMPACT_AFTER and self._head * 2 >= len(segments):
            del self._segments[: self._head]
            del self._starts[: self._head]
            self._head = 0

    def __len__(self) -> int:
        return len(self._segments) - self._head

"""The batch a worker holds while writing it, part by part, and the records in flight: out
of the queue, not yet settled."""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field

from market_data_store.chunks import Batch
from market_data_store.exceptions import PermanentBackendError

__all__ = ["Failed", "Held", "InFlight", "Part"]

Part = tuple[int, Batch]
"""Consecutive records of a batch and the queue position of the first one."""

Failed = tuple[int, Batch, PermanentBackendError]
"""A part the database refused, standing alone, and its error."""


@dataclass(slots=True)
class Held:
    """The batch a worker is writing: its parts not yet accounted for, in position order
    (one part, until the database refuses a record of it). It stays held until the last
    part is accounted for."""

    parts: deque[Part]
    attempts: int = 0
    """Write attempts of the first part."""
    crashes: int = 0
    failed: list[Failed] = field(default_factory=list)
    """Parts the database refused, standing alone: the verdict waits for the whole batch."""
    wrote: bool = False
    """Some part of the batch was written (so a failed part is its records' fault)."""
    splits: int = 0
    """Splits inside one caller's records so far (see ``SPLITS_PER_BATCH``)."""

    @property
    def start(self) -> int:
        """The queue position of its first record not yet accounted for (positions count
        accepted records)."""
        first = self.parts[0][0] if self.parts else sys.maxsize
        return min(first, self.failed[0][0]) if self.failed else first

    @property
    def size(self) -> int:
        return sum(len(records) for _, records in self.parts)


class InFlight:
    """Records that left the queue and are not settled yet: the batches workers hold (by
    worker slot) and the records a stop is salvaging; and ``dequeued``, the records that
    left the queue so far (the queue position of its head)."""

    def __init__(self) -> None:
        self.held: dict[int, Held] = {}
        self.dequeued = 0
        self.salvaging = 0

    def take(self, count: int) -> int:
        """``count`` records left the queue: the queue position of the first one."""
        start = self.dequeued
        self.dequeued += count
        return start

    @property
    def size(self) -> int:
        return sum(held.size for held in self.held.values()) + self.salvaging

    def settled_before(self, position: int) -> bool:
        """Every record before queue ``position`` left the queue and is settled."""
        if self.dequeued < position or self.salvaging:
            return False
        return all(held.start >= position for held in self.held.values())

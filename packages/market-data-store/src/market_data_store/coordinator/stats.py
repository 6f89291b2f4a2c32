"""The write coordinator's counters: a snapshot type for callers and the running counts."""

from __future__ import annotations

from dataclasses import dataclass

from market_data_core import BackpressureLevel
from market_data_store.coordinator.settings import CoordinatorState
from market_data_store.receipts import Outcome

__all__ = ["CoordinatorStats", "Counters"]


@dataclass(frozen=True, slots=True)
class CoordinatorStats:
    """Counters (records unless named otherwise) and the queue's state; see the package
    docstring for what each counter means. ``batches`` counts batches settled (each of
    their records written or given up), ``retries`` write attempts after the first,
    ``worker_restarts`` crashed workers."""

    accepted: int
    written: int
    failed: int
    dead_lettered: int
    dropped: int
    retries: int
    worker_restarts: int
    queue_size: int
    in_flight: int
    capacity: int
    level: BackpressureLevel
    batches: int
    publish_errors: int
    state: CoordinatorState
    outage_rounds: int = 0
    """Rounds of attempts that ran out on transient errors while the batch was held."""
    refused: int = 0
    """Records the database refused as bad data, isolated from their batch (and counted in
    ``dead_lettered`` or ``failed`` too)."""
    isolations: int = 0
    """Splits of a refused batch part (see "Isolation" in the package docstring)."""

    @property
    def unaccounted(self) -> int:
        """Always 0: accepted records not in any counter, queued or in flight."""
        settled = self.written + self.dead_lettered + self.dropped + self.failed
        return self.accepted - settled - self.queue_size - self.in_flight


@dataclass(slots=True)
class Counters:
    """The running counts behind ``CoordinatorStats`` (records unless named otherwise)."""

    accepted: int = 0
    written: int = 0
    failed: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    retries: int = 0
    restarts: int = 0
    batches: int = 0
    outage_rounds: int = 0
    refused: int = 0
    isolations: int = 0

    def count(self, outcome: Outcome, records: int) -> None:
        """``records`` settled with ``outcome``."""
        if outcome is Outcome.WRITTEN:
            self.written += records
        elif outcome is Outcome.DEAD_LETTERED:
            self.dead_lettered += records
        elif outcome is Outcome.FAILED:
            self.failed += records
        else:
            self.dropped += records

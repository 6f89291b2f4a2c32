"""Settling records: each accepted record ends in one counter and its caller's receipt; the
records the coordinator gives up on go to the dead-letter store, else count as failed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from market_data_store._queue import Signal
from market_data_store.backends.base import Record
from market_data_store.coordinator.held import Held
from market_data_store.coordinator.stats import Counters
from market_data_store.dlq import DeadLetterStore
from market_data_store.receipts import Ledger, Outcome

__all__ = ["Settlement", "describe"]

logger = structlog.get_logger(__name__)


class Settlement:
    """Where every settled record is counted (``counters``), told to its caller (``ledger``)
    and announced (``progress``); and the dead-letter store (``None`` when there is none)."""

    def __init__(
        self,
        *,
        counters: Counters,
        ledger: Ledger,
        progress: Signal,
        dead_letters: DeadLetterStore | None,
    ) -> None:
        self._counters = counters
        self._ledger = ledger
        self._progress = progress
        self.dead_letters = dead_letters

    def settle(self, start: int, count: int, outcome: Outcome) -> None:
        """Positions ``[start, start + count)`` are settled: count them, tell their callers."""
        self._counters.count(outcome, count)
        self._ledger.settle(start, count, outcome)
        self._progress.notify()

    def refuse(self, position: int, reason: str, outcome: Outcome) -> None:
        """The record at ``position`` was refused by the database and settled as ``outcome``."""
        self._counters.refused += 1
        self._counters.count(outcome, 1)
        self._ledger.refuse(position, reason, outcome)
        self._progress.notify()

    async def dead_letter(self, records: Sequence[Record], error: str, attempts: int) -> bool:
        """Put a batch in the dead-letter store; False when there is none or it failed. Only
        these records become models (an Arrow chunk's other rows stay columnar)."""
        if self.dead_letters is None:
            return False
        try:
            await self.dead_letters.put(records, error=error, attempts=attempts)
        except Exception:
            logger.exception("the dead-letter store failed to keep records", records=len(records))
            return False
        return True

    async def give_up(self, held: Held, error: str, refusal: str | None = None) -> None:
        """The first part of ``held`` failed for good: dead-letter it (else count it as
        failed). With a ``refusal`` its records were refused by the database: each is a
        refusal of its call too.

        Cancelling the worker meanwhile does not interrupt the put: the part is settled
        first, then the cancellation goes on (else it would be dead-lettered twice)."""
        start, records = held.parts[0]
        put = asyncio.ensure_future(self.dead_letter(records, error, held.attempts))
        try:
            await asyncio.shield(put)
        finally:
            if not put.done():
                await asyncio.wait((put,))
            held.parts.popleft()
            outcome = Outcome.DEAD_LETTERED if put.result() else Outcome.FAILED
            if outcome is Outcome.FAILED:
                logger.error(
                    "records failed and could not be dead-lettered",
                    records=len(records),
                    attempts=held.attempts,
                    error=error,
                )
            held.attempts = 0
            if refusal is None:
                self.settle(start, len(records), outcome)
            else:
                for position in range(start, start + len(records)):
                    self.refuse(position, refusal, outcome)


def describe(error: BaseException) -> str:
    """An error as its type and message, for dead letters and logs."""
    return f"{type(error).__name__}: {error}"

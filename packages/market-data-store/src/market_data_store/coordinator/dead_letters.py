"""Giving up on records: the dead-letter store keeps them, else they count as failed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from market_data_store.backends.base import Record
from market_data_store.coordinator.held import Held
from market_data_store.coordinator.state import CoordinatorCore
from market_data_store.receipts import Outcome

__all__ = ["DeadLettering"]

logger = structlog.get_logger(__name__)


class DeadLettering(CoordinatorCore):
    """Puts records the coordinator gives up on in the dead-letter store."""

    async def _dead_letter(self, records: Sequence[Record], error: str, attempts: int) -> bool:
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

    async def _give_up(self, held: Held, error: str, refusal: str | None = None) -> None:
        """The first part of ``held`` failed for good: dead-letter it (else count it as
        failed). With a ``refusal`` its records were refused by the database: each is a
        refusal of its call too.

        Cancelling the worker meanwhile does not interrupt the put: the part is settled
        first, then the cancellation goes on (else it would be dead-lettered twice)."""
        start, records = held.parts[0]
        put = asyncio.ensure_future(self._dead_letter(records, error, held.attempts))
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
                self._settle(start, len(records), outcome)
            else:
                for position in range(start, start + len(records)):
                    self._refuse(position, refusal, outcome)

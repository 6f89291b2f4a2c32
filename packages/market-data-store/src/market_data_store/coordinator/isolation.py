"""Isolating the records the database refused from their batch-mates (see "Isolation" in the
package docstring): a refused part is split in two until each failing part stands alone, then
the whole batch is judged."""

from __future__ import annotations

from market_data_store.chunks import Batch
from market_data_store.coordinator.dead_letters import Settlement, describe
from market_data_store.coordinator.held import Failed, Held, Part
from market_data_store.coordinator.settings import SPLITS_PER_BATCH
from market_data_store.exceptions import InvalidValueError, PermanentBackendError
from market_data_store.receipts import Ledger
from market_data_store.retry import CircuitBreaker

__all__ = ["Isolation"]


class Isolation:
    """Splits refused parts (where callers' records begin: the ``ledger`` knows) and settles
    the parts that failed once the batch is done (through ``settlement``; a systemic failure
    counts for the ``breaker``)."""

    def __init__(self, *, ledger: Ledger, breaker: CircuitBreaker, settlement: Settlement) -> None:
        self._ledger = ledger
        self._breaker = breaker
        self._settlement = settlement

    def split(self, held: Held, start: int, records: Batch) -> list[Part]:
        """The two halves of a part the database refused, or none when it stands alone: one
        record, or one caller's records once ``SPLITS_PER_BATCH`` splits inside callers
        were spent."""
        if len(records) < 2:
            return []
        inside = self._ledger.boundaries(start, start + len(records))
        if not inside:
            if held.splits >= SPLITS_PER_BATCH:
                return []
            held.splits += 1
        return _halves(start, records, inside)

    async def judge(self, held: Held) -> None:
        """Settle the parts the database refused: the records' fault when any part of the
        batch was written or the database named a value, else a systemic failure (one for
        the breaker, dead-lettered as a batch)."""
        failed, held.failed = held.failed, []
        systemic = not held.wrote and not all(_about_values(error) for *_, error in failed)
        if systemic:
            self._breaker.record_failure()
        elif failed:
            self._breaker.record_success()  # the database answered and judged values
        if systemic:
            failed = _merged(failed)
        for start, records, error in failed:
            held.parts.appendleft((start, records))
            blamed = not systemic or _about_values(error)
            await self._settlement.give_up(
                held, describe(error), _reason(error) if blamed else None
            )


def _halves(start: int, records: Batch, inside: list[int]) -> list[Part]:
    """Two parts of a refused part: split where one caller's records begin, the one
    nearest the middle (the callers' records stay apart), else in the middle."""
    middle = start + len(records) // 2
    cut = min(inside, key=lambda boundary: abs(boundary - middle)) if inside else middle
    return [(start, records[: cut - start]), (cut, records[cut - start :])]


def _merged(failed: list[Failed]) -> list[Failed]:
    """Failed parts, the consecutive ones joined again (a systemic failure is dead-lettered
    as the batch it was, with its first error)."""
    merged: list[Failed] = []
    for start, records, error in failed:
        if merged and merged[-1][0] + len(merged[-1][1]) == start:
            first, joined, reason = merged[-1]
            merged[-1] = (first, joined.joined(records), reason)
        else:
            merged.append((start, records, error))
    return merged


def _about_values(error: PermanentBackendError) -> bool:
    """The database named a value it cannot store: the records' fault wherever they are."""
    return isinstance(error, InvalidValueError)


def _reason(error: PermanentBackendError) -> str:
    """What to tell the caller whose records the database refused."""
    return error.reason if isinstance(error, InvalidValueError) else str(error)

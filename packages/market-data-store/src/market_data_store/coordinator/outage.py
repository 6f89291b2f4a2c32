"""Writing one part with retries under the circuit breaker; under ``on_outage="hold"`` an
outage of the database is waited out with the part held (see "Failures" in the package
docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from market_data_store.backends.base import WriteResult
from market_data_store.chunks import Batch
from market_data_store.coordinator.held import Held
from market_data_store.coordinator.settings import BREAKER_POLL, Writer
from market_data_store.coordinator.stats import Counters
from market_data_store.exceptions import (
    BackendError,
    PermanentBackendError,
    TransientBackendError,
)
from market_data_store.retry import BreakerState, CircuitBreaker, RetryPolicy

__all__ = ["OutageHold"]

logger = structlog.get_logger(__name__)


class OutageHold:
    """Retries, the circuit breaker, and holding a part through an outage: writes to
    ``writer``; ``holding()`` tells whether an outage is waited out now (``on_outage="hold"``
    while the coordinator runs)."""

    def __init__(
        self,
        writer: Writer,
        *,
        retry: RetryPolicy,
        breaker: CircuitBreaker,
        counters: Counters,
        holding: Callable[[], bool],
    ) -> None:
        self._writer = writer
        self._retry = retry
        self._breaker = breaker
        self._counters = counters
        self._holding = holding

    async def write_part(self, held: Held, records: Batch) -> BackendError | None:
        """Write the first part of ``held`` with retries: ``None`` once written, else the
        error that settles it. Under ``on_outage="hold"`` an outage is waited out."""
        while True:
            trial = await self._admit()
            try:
                await self._retry.call(
                    lambda: self._attempt(held, records),
                    on_retry=lambda attempt, error, delay: self._count_retry(held, error, delay),
                )
            except asyncio.CancelledError:
                if trial:
                    self._breaker.release()
                raise
            except TransientBackendError as exc:
                self._breaker.record_failure()
                if self._holding():
                    self._held_over(held, exc)
                    continue
                return exc
            except PermanentBackendError as exc:
                if trial:
                    self._breaker.release()  # judged with the whole batch (see Isolation.judge)
                return exc
            except BackendError as exc:
                self._breaker.record_failure()
                return exc
            except Exception:
                self._breaker.record_failure()
                raise
            self._breaker.record_success()
            return None

    async def _attempt(self, held: Held, records: Batch) -> WriteResult:
        held.attempts += 1
        return await self._writer.write(records)

    def _held_over(self, held: Held, error: TransientBackendError) -> None:
        """A round of attempts ran out during an outage: keep the batch for the next one."""
        self._counters.outage_rounds += 1
        logger.warning(
            "a batch is still not written; holding it until the database answers",
            records=held.size,
            attempts=held.attempts,
            error=str(error),
        )

    def _count_retry(self, held: Held, error: TransientBackendError, delay: float) -> None:
        self._counters.retries += 1
        logger.info(
            "write attempt failed; retrying",
            attempt=held.attempts,
            records=held.size,
            error=str(error),
            delay=round(delay, 3),
        )

    async def _admit(self) -> bool:
        """Wait until the breaker admits a batch; True when it is the half-open trial."""
        while True:
            state = self._breaker.state
            if self._breaker.try_acquire():
                return state is BreakerState.HALF_OPEN
            await asyncio.sleep(self._breaker_wait())

    async def breaker_not_open(self) -> None:
        # Polling: the breaker half-opens by its own clock (injectable), not by an event.
        while self._breaker.state is BreakerState.OPEN:  # noqa: ASYNC110
            await asyncio.sleep(self._breaker_wait())

    def _breaker_wait(self) -> float:
        return min(max(self._breaker.retry_after(), 0.001), BREAKER_POLL)

"""Writing one part with retries under the circuit breaker; under ``on_outage="hold"`` an
outage of the database is waited out with the part held (see "Failures" in the package
docstring)."""

from __future__ import annotations

import asyncio

import structlog

from market_data_store.backends.base import WriteResult
from market_data_store.chunks import Batch
from market_data_store.coordinator.dead_letters import DeadLettering
from market_data_store.coordinator.held import Held
from market_data_store.coordinator.settings import BREAKER_POLL, CoordinatorState
from market_data_store.exceptions import (
    BackendError,
    PermanentBackendError,
    TransientBackendError,
)
from market_data_store.retry import BreakerState

__all__ = ["OutageHandling"]

logger = structlog.get_logger(__name__)


class OutageHandling(DeadLettering):
    """Retries, the circuit breaker, and holding a part through an outage."""

    async def _write_part(self, held: Held, records: Batch) -> BackendError | None:
        """Write the first part of ``held`` with retries: ``None`` once written, else the
        error that settles it. Under ``on_outage="hold"`` an outage is waited out."""
        while True:
            trial = await self._admit()
            try:
                await self.retry.call(
                    lambda: self._attempt(held, records),
                    on_retry=lambda attempt, error, delay: self._count_retry(held, error, delay),
                )
            except asyncio.CancelledError:
                if trial:
                    self.breaker.release()
                raise
            except TransientBackendError as exc:
                self.breaker.record_failure()
                if self._holds_through_outage():
                    self._held_over(held, exc)
                    continue
                return exc
            except PermanentBackendError as exc:
                if trial:
                    self.breaker.release()  # judged with the whole batch (see _judge)
                return exc
            except BackendError as exc:
                self.breaker.record_failure()
                return exc
            except Exception:
                self.breaker.record_failure()
                raise
            self.breaker.record_success()
            return None

    async def _attempt(self, held: Held, records: Batch) -> WriteResult:
        held.attempts += 1
        return await self._writer.write(records)

    def _holds_through_outage(self) -> bool:
        return self.on_outage == "hold" and self._state is CoordinatorState.RUNNING

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
            state = self.breaker.state
            if self.breaker.try_acquire():
                return state is BreakerState.HALF_OPEN
            await asyncio.sleep(self._breaker_wait())

    async def _breaker_not_open(self) -> None:
        # Polling: the breaker half-opens by its own clock (injectable), not by an event.
        while self.breaker.state is BreakerState.OPEN:  # noqa: ASYNC110
            await asyncio.sleep(self._breaker_wait())

    def _breaker_wait(self) -> float:
        return min(max(self.breaker.retry_after(), 0.001), BREAKER_POLL)

"""``WriteCoordinator``: starting and stopping the workers, their supervisor and the feedback
heartbeat; the other jobs are its bases (one module each, see the package docstring)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from market_data_store.coordinator.drain import cancel
from market_data_store.coordinator.health import Observation
from market_data_store.coordinator.settings import CoordinatorState
from market_data_store.exceptions import CoordinatorStoppedError

__all__ = ["WriteCoordinator"]


class WriteCoordinator(Observation):
    """Bounded, backpressured, supervised writes to ``writer``; see the package docstring.

    Use ``async with WriteCoordinator(...) as coordinator:`` or ``start()`` / ``stop()``.
    ``publisher`` defaults to a new ``InMemoryFeedbackBus`` (``coordinator.publisher``).
    ``now`` gives event timestamps (UTC). Arguments that cannot work raise
    ``StoreConfigurationError`` naming the argument.
    """

    async def start(self) -> None:
        """Start the workers, their supervisor and the heartbeat; publish the first event.

        A no-op when running; a stopped coordinator can be started again (its counters and
        ``seq`` carry on)."""
        if self._state is CoordinatorState.RUNNING:
            return
        if self._state is CoordinatorState.STOPPING:
            msg = f"write coordinator {self.coordinator_id} is stopping; start it after stop()"
            raise CoordinatorStoppedError(msg)
        self._queue.open()
        self._stopped = asyncio.Event()
        self._state = CoordinatorState.RUNNING
        self._emitter.started(len(self._queue))
        for slot in range(self._worker_count):
            self._spawn(slot, delay=0.0)
        loop = asyncio.get_running_loop()
        self._supervisor = loop.create_task(self._supervise(), name=f"{self._name}:supervisor")
        self._heartbeat = loop.create_task(
            self._emitter.run_heartbeat(self._heartbeat_interval, self._queue.__len__),
            name=f"{self._name}:heartbeat",
        )

    async def stop(self, *, drain: bool = True, drain_timeout: float | None = None) -> None:
        """Stop accepting records and stop the workers; see "Stopping" in the package
        docstring. A drain that takes longer than ``drain_timeout`` seconds continues as
        ``drain=False``. Returns once every accepted record is accounted for. Idempotent;
        a concurrent call waits for the first one."""
        if self._state is CoordinatorState.STOPPING and self._stopped is not None:
            await self._stopped.wait()
            return
        if self._state is not CoordinatorState.RUNNING:
            return
        self._state = CoordinatorState.STOPPING
        self._queue.close()
        self._emitter.stopping(len(self._queue))
        try:
            if not (drain and await self._drained(drain_timeout)):
                await self._abort()
        finally:
            await cancel(self._supervisor)
            await cancel(self._heartbeat)
            await self._emitter.flush()
            self._state = CoordinatorState.STOPPED
            if self._stopped is not None:
                self._stopped.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop(drain=True)

    def __repr__(self) -> str:
        return (
            f"WriteCoordinator(id={self.coordinator_id!r}, state={self._state.value!r}, "
            f"queue={len(self._queue)}/{self.capacity}, level={self.level.value!r})"
        )

"""The drain of a stopped job, bounded by ``drain_timeout`` (private).

A draining stop (SIGTERM, Ctrl-C, a reload) starts the clock. ``Drain.watch`` gives up on
the graph when the time is up: it cancels the nodes (``GraphRuntime.stop(drain=False)``),
which records the nodes it ended and the rows still queued in front of each.
``Drain.close_store`` then gives the in-process store what is left of the time (at least
half a second) to write what it accepted; what it could not write goes to its dead-letter
file (or is counted as dropped when it has none). A store that does not answer in that
time (a database locked by another writer) is left behind rather than holding the stop.

``Drain.report`` says how the drain went and what was not flushed: nothing is lost
without being named. The store's writes are idempotent upserts, so running a replay or
synthetic job again fills the gap, and ``mds dlq replay`` writes the dead-lettered
batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog

from market_data_pipeline.runtime import GraphRuntime, RunResult, RunState

__all__ = ["Drain"]

logger = structlog.get_logger("market_data_pipeline.job")

T = TypeVar("T")

_LOSSES = ("dead_lettered", "dropped", "failed")
_STORE_GRACE = 0.5
"""Seconds the store gets at least after a stop: to finish a write in progress and stop
its workers (with nothing left of the drain time it would cancel even an idle store's)."""


class Drain:
    """The time a stop may take, and what it could not flush in that time."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._started: float | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._store: dict[str, int] = {}
        self._dead_letter_path: str | None = None

    def start(self) -> None:
        """A draining stop came: the clock starts (the first time only)."""
        if self._started is None:
            self._started = asyncio.get_running_loop().time()

    def left(self) -> float | None:
        """Seconds left to drain (``None`` when no stop came)."""
        if self._started is None:
            return None
        elapsed = asyncio.get_running_loop().time() - self._started
        return max(self.timeout - elapsed, 0.0)

    def watch(self, runtime: GraphRuntime) -> None:
        """Cancel ``runtime`` if it is still draining when the time is up."""
        if self._started is None or (self._watchdog is not None and not self._watchdog.done()):
            return
        self._watchdog = asyncio.get_running_loop().create_task(
            self._give_up(runtime), name="mdp-drain-deadline"
        )

    async def _give_up(self, runtime: GraphRuntime) -> None:
        await asyncio.sleep(self.left() or 0.0)
        if runtime.state in {RunState.CREATED, RunState.RUNNING, RunState.STOPPING}:
            logger.warning(
                "the drain timed out: abandoning what is in flight",
                job=runtime.job,
                timeout=self.timeout,
                queued_rows=sum(runtime.channel_rows().values()),
            )
            await runtime.stop(drain=False)

    async def stop_watching(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def bounded(self, work: Awaitable[T], what: str) -> T | None:
        """``work``'s result; after a stop, ``None`` when it takes longer than the time
        left (at least half a second): a database that does not answer (locked by another
        writer, unreachable) must not hold the stop."""
        left = self.left()
        if left is None:
            return await work
        try:
            return await asyncio.wait_for(work, max(left, _STORE_GRACE))
        except TimeoutError:
            logger.warning("the store did not answer within the drain timeout", what=what)
            return None

    async def close_store(self, store: Any) -> None:
        """Drain and stop an in-process ``Store``; after a stop, in the time left."""
        left = self.left()
        if left is not None:
            coordinator = store.coordinator
            before = coordinator.stats()
            await coordinator.stop(drain=True, drain_timeout=max(left, _STORE_GRACE))
            after = coordinator.stats()  # every record it accepted is accounted for
            losses = {k: getattr(after, k) - getattr(before, k) for k in _LOSSES}
            self._store = {k: v for k, v in losses.items() if v}
            if self._store.get("dead_lettered"):
                self._dead_letter_path = str(store.settings.dead_letter_path)
        await self.bounded(store.stop(drain=True), "closing the store")

    def report(self, result: RunResult) -> dict[str, Any]:
        """How the stop drained: ``{}`` when no stop came; else ``timeout``, ``seconds``,
        ``complete`` and, when it is not, ``not_flushed``: ``channels`` (rows queued in
        front of each node), ``cancelled`` (nodes ended before they finished: their open
        windows or buffers were not emitted), ``store`` (counts only, as core's
        ``NotFlushed`` types them: records it dead-lettered, dropped or failed to write)
        and ``dead_letter_path`` (where the dead-lettered records went)."""
        if self._started is None:
            return {}
        not_flushed: dict[str, Any] = {}
        if result.unflushed:
            not_flushed["channels"] = dict(result.unflushed)
        if result.cancelled:
            not_flushed["cancelled"] = list(result.cancelled)
        if self._store:
            not_flushed["store"] = dict(self._store)
        if self._dead_letter_path is not None:
            not_flushed["dead_letter_path"] = self._dead_letter_path
        seconds = asyncio.get_running_loop().time() - self._started
        report: dict[str, Any] = {
            "timeout": self.timeout,
            "seconds": round(seconds, 3),
            "complete": not not_flushed,
        }
        if not_flushed:
            report["not_flushed"] = not_flushed
        return report

"""A watcher that polls something every ``poll_interval`` seconds in a task of its own."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Self

import httpx
import structlog

logger = structlog.get_logger(__name__)


class PollingWatcher:
    """Base of the store-health and topology watchers: ``start``/``aclose``/``async with``.

    Subclasses set ``poll_interval``, ``_client`` (an ``httpx.AsyncClient`` or ``None``) and
    ``_task = None`` in ``__init__`` and implement ``poll_once``.
    """

    poll_interval: float
    task_name = "poller"
    _task: asyncio.Task[None] | None
    _client: httpx.AsyncClient | None

    async def poll_once(self) -> Any:
        raise NotImplementedError

    async def run(self) -> None:
        """Poll forever; a failing poll is logged and the watch goes on."""
        while True:
            try:
                await self.poll_once()
            except Exception:  # a bug must not stop the watch
                logger.exception("poll failed", watcher=self.task_name)
            await asyncio.sleep(self.poll_interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=self.task_name)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

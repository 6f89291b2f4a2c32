"""Telemetry over Redis streams (needs the ``market-data-core[redis]`` extra).

Every publisher appends to one stream (``XADD`` with an approximate ``MAXLEN``); every
subscriber reads it from the end with ``XREAD`` (broadcast: each subscriber sees every
message). Entries use the wire format of ``market_data_core.transports.wire``.

- The publisher never raises because Redis is down: ``publish`` returns False, the failure
  is counted and visible in ``health()``; the heartbeat republishes the latest message of
  every coordinator and provider (same ``seq``, new ``ts``) every ``heartbeat_interval``
  seconds, so consumers can tell a quiet coordinator from a dead one, and so the state is
  restored once Redis is back.
- The subscriber reconnects with capped exponential backoff after the server goes away,
  drops stale sequence numbers and reports silence past its TTL as unknown (``level()``
  returns ``None``).

The Redis URL may hold a password: it is never logged nor put in health details.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Self, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from market_data_core.exceptions import ConfigurationError, ContractError
from market_data_core.health import HealthComponent, HealthState
from market_data_core.telemetry import BackpressureLevel, FeedbackEvent, RateAdjustment
from market_data_core.transports.tracker import FeedbackTracker
from market_data_core.transports.wire import decode, encode

__all__ = ["DEFAULT_STREAM", "RedisFeedbackPublisher", "RedisFeedbackSubscriber"]

logger = logging.getLogger(__name__)

DEFAULT_STREAM = "md:feedback"
_NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
Message = FeedbackEvent | RateAdjustment


class RedisFeedbackPublisher:
    """A ``FeedbackPublisher`` on a Redis stream, with heartbeat republish.

    Use as an async context manager (starts and stops the heartbeat)::

        async with RedisFeedbackPublisher.from_url("redis://127.0.0.1:6379/0") as pub:
            await pub.publish(event)
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = 10_000,
        heartbeat_interval: float | None = 5.0,
        publisher_id: str | None = None,
        component_name: str = "feedback_transport",
        stall_after: float = 2.0,
    ) -> None:
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            msg = f"heartbeat_interval must be > 0 seconds or None, got {heartbeat_interval}"
            raise ConfigurationError(msg)
        self._client = client
        self.stream = stream
        self.maxlen = maxlen
        self.heartbeat_interval = heartbeat_interval
        self.publisher_id = publisher_id or uuid.uuid4().hex
        self.component_name = component_name
        self._latest: dict[tuple[str, str], Message] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False
        self._owns_client = False
        self.published = 0
        self.failures = 0
        self.last_error: str | None = None
        self.stall_after = stall_after
        self._sending: list[float] = []
        """When each send in progress began (monotonic)."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisFeedbackPublisher:
        client = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        publisher = cls(client, **kwargs)
        publisher._owns_client = True
        return publisher

    async def publish(self, message: Message) -> bool:
        """Append ``message`` to the stream; False (counted, never raised) if Redis is down."""
        key = (
            ("rate", message.provider)
            if isinstance(message, RateAdjustment)
            else (
                "feedback",
                message.coordinator_id,
            )
        )
        self._latest[key] = message
        return await self._send(message)

    async def _send(self, message: Message) -> bool:
        fields: dict[Any, Any] = encode(message, publisher=self.publisher_id)
        started = time.monotonic()
        self._sending.append(started)
        try:
            try:
                await self._client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
            except RedisConnectionError:
                # A pooled connection broken by a server restart fails once even though
                # Redis is up again; redis-py has dropped it, so one more try on a fresh
                # connection tells whether Redis is down. A duplicate entry carries the same
                # state, so receivers are unaffected by it.
                await self._client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
        except (*_NETWORK_ERRORS, RedisError) as exc:
            self._failed(type(exc).__name__)
            return False
        except asyncio.CancelledError:  # a caller's timeout: Redis did not answer in time
            self._failed("no answer (publish cancelled)")
            raise
        finally:
            self._sending.remove(started)
        self.published += 1
        self.last_error = None
        return True

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        logger.warning(
            "feedback publish failed", extra={"stream": self.stream, "error": str(error)}
        )

    async def republish(self) -> int:
        """Send the latest message of every key again with a fresh ``ts``; the heartbeat."""
        sent = 0
        now = datetime.now(UTC)
        for key, message in list(self._latest.items()):
            fresh = message.model_copy(update={"ts": max(now, message.ts)})
            self._latest[key] = fresh
            sent += await self._send(fresh)
        return sent

    def health(self) -> HealthComponent:
        """Healthy after a successful send (or before any), unhealthy after a failed one or
        while a send has waited more than ``stall_after`` seconds (a frozen Redis accepts
        the connection and never answers); not required: a service without its feedback
        transport is degraded, not down."""
        stalled = bool(self._sending) and time.monotonic() - self._sending[0] > self.stall_after
        healthy = self.last_error is None and not stalled
        last_error = "no answer (publish stalled)" if stalled else self.last_error
        state = HealthState.HEALTHY if healthy else HealthState.UNHEALTHY
        return HealthComponent(
            name=self.component_name,
            state=state,
            required=False,
            details={
                "transport": "redis",
                "stream": self.stream,
                "published": self.published,
                "failures": self.failures,
                "last_error": last_error,
            },
        )

    async def start(self) -> None:
        self._closing = False
        if self.heartbeat_interval is not None and self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._beat(self.heartbeat_interval), name="feedback-heartbeat"
            )

    async def aclose(self) -> None:
        self._closing = True
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            # redis-py may turn a cancellation that lands inside XADD into a connection
            # error, which ``_send`` absorbs: cancel again until the task has ended (the
            # ``_closing`` flag ends the loop at its next turn in any case).
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            if not task.cancelled():
                with contextlib.suppress(Exception):
                    task.result()
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _beat(self, interval: float) -> None:
        while not self._closing:
            await asyncio.sleep(interval)
            await self.republish()


class RedisFeedbackSubscriber:
    """A ``FeedbackSubscriber`` reading a Redis stream, resilient to server restarts.

    ``async with`` starts a reader task; ``async for message in subscriber`` yields each
    accepted (non-stale) message; ``level()``, ``latest()`` and ``latest_rate()`` answer at
    any time from what was read. Give the client a ``socket_timeout`` longer than
    ``block_ms`` (``from_url`` does).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        ttl: float = 15.0,
        block_ms: int = 1000,
        from_start: bool = False,
        queue_size: int = 1024,
        max_backoff: float = 2.0,
        component_name: str = "feedback_transport",
    ) -> None:
        self._client = client
        self.stream = stream
        self.tracker = FeedbackTracker(ttl=ttl)
        self.block_ms = block_ms
        self.max_backoff = max_backoff
        self.component_name = component_name
        self._last_id = "0-0" if from_start else "$"
        self._queue: asyncio.Queue[Message] = asyncio.Queue(queue_size)
        self._reader: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._owns_client = False
        self.connected = False
        self.received = 0
        self.decode_errors = 0
        self.dropped_overflow = 0
        self.reconnects = 0
        self.last_error: str | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisFeedbackSubscriber:
        block_s = kwargs.get("block_ms", 1000) / 1000
        client = aioredis.Redis.from_url(url, socket_timeout=block_s + 5, socket_connect_timeout=2)
        subscriber = cls(client, **kwargs)
        subscriber._owns_client = True
        return subscriber

    def level(self, coordinator_id: str) -> BackpressureLevel | None:
        return self.tracker.level(coordinator_id)

    def latest(self, coordinator_id: str) -> FeedbackEvent | None:
        return self.tracker.latest(coordinator_id)

    def latest_rate(self, provider: str) -> RateAdjustment | None:
        return self.tracker.latest_rate(provider)

    def health(self) -> HealthComponent:
        return HealthComponent(
            name=self.component_name,
            state=HealthState.HEALTHY if self.connected else HealthState.UNHEALTHY,
            required=False,
            details={
                "transport": "redis",
                "stream": self.stream,
                "received": self.received,
                "reconnects": self.reconnects,
                "decode_errors": self.decode_errors,
                "last_error": self.last_error,
            },
        )

    async def start(self) -> None:
        if self._reader is None:
            if self._last_id == "$":
                await self._anchor_at_end()
            self._reader = asyncio.get_running_loop().create_task(
                self._read_forever(), name="feedback-reader"
            )

    async def _anchor_at_end(self) -> None:
        """Resolve '$' to a concrete id now, so messages published right after ``start``
        returns are not missed and a reconnect resumes from a known point."""
        try:
            info = await self._client.xinfo_stream(self.stream)
            self._last_id = _text(info["last-generated-id"])
            self.connected = True
        except RedisError as exc:
            if "no such key" in str(exc).lower():
                self._last_id, self.connected = "0-0", True
            else:
                self._note_failure(exc)
        except _NETWORK_ERRORS as exc:
            self._note_failure(exc)

    async def aclose(self) -> None:
        """Stop the reader and close the client if this subscriber made it.

        redis-py can turn a cancellation that lands inside a blocking ``XREAD`` into a
        connection error, or wait on it; so the reader also stops on a flag, and when it has
        not stopped within a second its connections are dropped to break the read.
        """
        reader, self._reader = self._reader, None
        if reader is not None:
            self._stopping.set()
            reader.cancel()
            done, _ = await asyncio.wait({reader}, timeout=1.0)
            if not done:
                await self._client.connection_pool.disconnect()
                await asyncio.wait({reader}, timeout=5.0)
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                logger.warning(
                    "feedback reader had failed", extra={"error": repr(reader.exception())}
                )
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            yield await self._queue.get()

    async def _read_forever(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                response = await self._client.xread(
                    {self.stream: self._last_id}, count=500, block=self.block_ms
                )
            except (*_NETWORK_ERRORS, RedisError) as exc:
                if self._stopping.is_set():
                    return
                self._note_failure(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if not self.connected:
                self.reconnects += 1
            self.connected, self.last_error, backoff = True, None, 0.05
            # RESP2 reply: [[stream, [(entry_id, fields), ...]]]; fields is None for an entry
            # trimmed between XREAD's scan and its reply.
            streams = cast("list[tuple[Any, list[tuple[Any, dict[Any, Any] | None]]]]", response)
            for _stream, entries in streams or []:
                for entry_id, fields in entries:
                    self._last_id = _text(entry_id)
                    if fields:
                        self._accept(fields)

    def _accept(self, fields: dict[Any, Any]) -> None:
        try:
            wire = decode(fields)
        except ContractError as exc:
            self.decode_errors += 1
            logger.warning(
                "skipping undecodable entry", extra={"stream": self.stream, "error": str(exc)}
            )
            return
        if not self.tracker.observe(wire.message, publisher=wire.publisher):
            return
        self.received += 1
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped_overflow += 1
        self._queue.put_nowait(wire.message)

    def _note_failure(self, exc: BaseException) -> None:
        if self.connected:
            logger.warning(
                "feedback stream unreachable",
                extra={"stream": self.stream, "error": type(exc).__name__},
            )
        self.connected = False
        self.last_error = type(exc).__name__


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value

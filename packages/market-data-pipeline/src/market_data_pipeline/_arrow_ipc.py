"""Arrow batches as bytes, for transports that carry one batch per message (Redis streams).

A stream entry holds ``kind`` (``trades``, ``quotes``...), ``rows`` and ``data``: the batch
in the Arrow IPC stream format (schema + record batches; optionally LZ4-compressed
buffers); the ``redis_stream`` sink adds ``src`` and ``seq`` (who wrote it, its number), so
that a write retried after a broken connection is not added twice. :func:`connect` gives
the typed ``redis.asyncio`` client both ends use, :class:`RedisLink` the reconnection.

Reconnection: every command goes through :meth:`RedisLink.call`, which retries a
connection error (refused, reset, a server still loading its data) with redis-py's
``Retry`` and exponential backoff with jitter (50 ms doubling to at most 2 s) until the
server answers again, for at most ``reconnect_timeout`` seconds of one outage; then it
raises :class:`~market_data_pipeline.exceptions.RedisUnavailableError`, naming the server
(never its password). The client itself never retries (``retries=0``): the nodes must know
that a command's outcome is unknown (an ``XADD`` may have been applied, an ``XREADGROUP``
may have delivered entries whose reply was lost).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal, Protocol, TypeVar, cast
from urllib.parse import urlsplit

import pyarrow as pa
import structlog

from market_data_pipeline import records
from market_data_pipeline.exceptions import RedisUnavailableError
from market_data_pipeline.services import (
    DATA_LOSS_SERVICE,
    REDIS_URL_SERVICE,
    STATE_DIR_SERVICE,
    Services,
)

__all__ = [
    "DATA_LOSS_SERVICE",
    "DEFAULT_URL",
    "FIELD_DATA",
    "FIELD_KIND",
    "FIELD_ROWS",
    "REDIS_URL_SERVICE",
    "STATE_DIR_SERVICE",
    "RedisLink",
    "StreamClient",
    "connect",
    "decode",
    "encode",
    "entry",
    "node_url",
    "redact_url",
]

FIELD_KIND: Final = b"kind"
FIELD_ROWS: Final = b"rows"
FIELD_DATA: Final = b"data"
FIELD_SOURCE: Final = b"src"
FIELD_SEQ: Final = b"seq"

T = TypeVar("T")
logger = structlog.get_logger("market_data_pipeline.redis")

Compression = Literal["lz4", "zstd"] | None


def encode(table: pa.Table, *, compression: Compression = None) -> bytes:
    """The table in the Arrow IPC stream format."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def decode(data: bytes) -> pa.Table:
    """A table from :func:`encode`'s bytes (raises ``pyarrow.ArrowInvalid`` on bad bytes)."""
    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


def entry(table: pa.Table, *, compression: Compression = None) -> dict[bytes, bytes]:
    """The fields of one stream entry for the batch."""
    kind = records.kind_of(table)
    return {
        FIELD_KIND: (str(kind) if kind is not None else "other").encode(),
        FIELD_ROWS: str(table.num_rows).encode(),
        FIELD_DATA: encode(table, compression=compression),
    }


class StreamClient(Protocol):
    """The few Redis stream commands the transport uses (``redis.asyncio.Redis``)."""

    async def xadd(
        self,
        name: str,
        fields: Mapping[bytes, bytes],
        *,
        maxlen: int | None = None,
        approximate: bool = True,
    ) -> bytes: ...

    async def xgroup_create(
        self, name: str, groupname: str, id: str = "$", mkstream: bool = False
    ) -> bool: ...

    async def xreadgroup(
        self,
        groupname: str,
        consumername: str,
        streams: Mapping[str, str],
        count: int | None = None,
        block: int | None = None,
    ) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None: ...

    async def xack(self, name: str, groupname: str, *ids: bytes) -> int: ...

    async def xautoclaim(
        self,
        name: str,
        groupname: str,
        consumername: str,
        min_idle_time: int,
        start_id: str = "0-0",
        count: int | None = None,
    ) -> list[Any]: ...

    async def xpending(self, name: str, groupname: str) -> dict[str, Any]: ...

    async def xinfo_stream(self, name: str) -> dict[str, Any]: ...

    async def xinfo_groups(self, name: str) -> list[dict[str, Any]]: ...

    async def xrevrange(
        self, name: str, max: str = "+", min: str = "-", count: int | None = None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]: ...

    async def hgetall(self, name: str) -> dict[bytes, bytes]: ...

    async def delete(self, *names: str) -> int: ...

    def pipeline(self, transaction: bool = True) -> Any: ...

    async def aclose(self) -> None: ...


DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"


def node_url(params: Any, services: Services) -> str:
    """The Redis URL of a ``redis_stream`` node: its own ``url`` param when given, else the
    runtime's ``MDP_REDIS_URL`` (so a config need not carry a password), else
    :data:`DEFAULT_URL`."""
    if "url" in params.model_fields_set:
        return str(params.url.get_secret_value())
    shared = services.redis_url
    if shared is not None:
        return str(shared.get_secret_value() if hasattr(shared, "get_secret_value") else shared)
    return DEFAULT_URL


def redact_url(url: str) -> str:
    """``redis://host:port/db``: no user or password (for messages and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else "<url>"


def _redis() -> Any:
    try:
        import redis.asyncio as aioredis  # noqa: PLC0415 - the optional extra
    except ImportError:
        msg = "Redis streams need redis-py: pip install 'market-data-pipeline[redis]'"
        raise RuntimeError(msg) from None
    return aioredis


def connect(url: str) -> StreamClient:
    """A ``redis.asyncio`` client for ``url`` (needs the ``redis`` extra) that does not
    retry by itself (:class:`RedisLink` does). The URL may hold a password: callers never
    log it."""
    aioredis = _redis()
    from redis.asyncio.retry import Retry  # noqa: PLC0415
    from redis.backoff import NoBackoff  # noqa: PLC0415

    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=5, health_check_interval=30, retry=Retry(NoBackoff(), 0)
    )
    return cast("StreamClient", client)


class RedisLink:
    """A node's Redis client and its reconnection policy (see the module docstring).

    ``give_up``, when it returns true, ends the retries at once (a provider that is
    stopping or closing: what it has not acknowledged is delivered again later).

    ``outages`` counts the outages seen (a command failed for want of a connection);
    ``reconnects`` those that ended with the server answering again. A node compares them
    with what it saw last to resume after one (re-read what may have been delivered,
    check what the server kept).
    """

    def __init__(
        self,
        url: str,
        *,
        node_id: str,
        reconnect_timeout: float,
        on_reconnect: Callable[[], None] | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> None:
        _redis()
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import ExponentialWithJitterBackoff  # noqa: PLC0415
        from redis.exceptions import ConnectionError, TimeoutError  # noqa: PLC0415

        self.where = redact_url(url)
        """The server without user or password: for messages and logs."""
        self.node_id = node_id
        self.reconnect_timeout = reconnect_timeout
        self.client = connect(url)
        self.outages = 0
        self.reconnects = 0
        self._on_reconnect = on_reconnect
        self._give_up = give_up
        """True when waiting for the server is pointless (the node is stopping, closing)."""
        self._down_since: float | None = None
        # retries=-1: no count; an outage is bounded in time by `fail` below
        self._retry = Retry(
            ExponentialWithJitterBackoff(cap=2.0, base=0.05),
            -1,
            supported_errors=(ConnectionError, TimeoutError, OSError),  # type: ignore[arg-type]
        )

    async def call(self, do: Callable[[], Awaitable[T]]) -> T:
        """``await do()``, retried while the server cannot be reached (for at most
        ``reconnect_timeout`` seconds from the first failure of an outage). ``do`` is
        called again on each attempt: it must be safe to repeat, or check first."""
        result = await self._retry.call_with_retry(do, self._failed)
        if self._down_since is not None:
            seconds = time.monotonic() - self._down_since
            self._down_since = None
            self.reconnects += 1
            logger.info(
                "redis reachable again",
                node=self.node_id,
                redis=self.where,
                seconds=round(seconds, 3),
            )
            if self._on_reconnect is not None:
                self._on_reconnect()
        return result

    async def _failed(self, error: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            logger.warning(
                "redis unreachable: reconnecting",
                node=self.node_id,
                redis=self.where,
                error=str(error),
                timeout=self.reconnect_timeout,
            )
        if self._give_up is not None and self._give_up():
            message = f"Redis at {self.where} unreachable while stopping: {error}"
            raise RedisUnavailableError(message) from error
        if now - self._down_since >= self.reconnect_timeout:
            message = (
                f"Redis at {self.where} unreachable for {now - self._down_since:.1f} s"
                f" (reconnect_timeout {self.reconnect_timeout:g} s): {error}"
            )
            raise RedisUnavailableError(message) from error

    async def aclose(self) -> None:
        await self.client.aclose()

"""Arrow batches as bytes, for transports that carry one batch per message (Redis streams).

A stream entry holds ``kind`` (``trades``, ``quotes``...), ``rows`` and ``data``: the batch
in the Arrow IPC stream format (schema + record batches; optionally LZ4-compressed
buffers). :func:`connect` gives the typed ``redis.asyncio`` client both ends use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol, cast

import pyarrow as pa

from market_data_pipeline import records

__all__ = [
    "DEFAULT_URL",
    "FIELD_DATA",
    "FIELD_KIND",
    "FIELD_ROWS",
    "REDIS_URL_SERVICE",
    "StreamClient",
    "connect",
    "decode",
    "encode",
    "entry",
    "node_url",
]

FIELD_KIND: Final = b"kind"
FIELD_ROWS: Final = b"rows"
FIELD_DATA: Final = b"data"

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

    async def hgetall(self, name: str) -> dict[bytes, bytes]: ...

    async def delete(self, *names: str) -> int: ...

    def pipeline(self, transaction: bool = True) -> Any: ...

    async def aclose(self) -> None: ...


DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"
REDIS_URL_SERVICE: Final = "redis_url"
"""The runtime's service holding ``MDP_REDIS_URL`` (a ``SecretStr``), when set."""


def node_url(params: Any, services: Mapping[str, Any]) -> str:
    """The Redis URL of a ``redis_stream`` node: its own ``url`` param when given, else the
    runtime's ``MDP_REDIS_URL`` (so a config need not carry a password), else
    :data:`DEFAULT_URL`."""
    if "url" in params.model_fields_set:
        return str(params.url.get_secret_value())
    shared = services.get(REDIS_URL_SERVICE)
    if shared is not None:
        return str(shared.get_secret_value() if hasattr(shared, "get_secret_value") else shared)
    return DEFAULT_URL


def connect(url: str) -> StreamClient:
    """A ``redis.asyncio`` client for ``url`` (needs the ``redis`` extra). The URL may hold
    a password: callers never log it."""
    try:
        import redis.asyncio as aioredis  # noqa: PLC0415 - the optional extra
    except ImportError:
        msg = "Redis streams need redis-py: pip install 'market-data-pipeline[redis]'"
        raise RuntimeError(msg) from None

    client = aioredis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    return cast("StreamClient", client)

"""Read batches from a Redis stream through a consumer group: the tick transport's far end.

Each entry is one batch written by the ``redis_stream`` sink (Arrow IPC in ``data``). Workers
that share a ``group`` share the entries: N pipeline processes on N machines split one
stream, each entry going to one of them.

Delivery is at least once: an entry is acknowledged (``XACK``) only after its batch was
handed downstream, and on start the consumer first re-reads its own entries that were
delivered but never acknowledged (a crash between reading and acknowledging), so give each
worker a stable ``consumer`` name. A batch may thus arrive twice; the store's idempotent
upsert makes that harmless. The provider ends when the job stops, or when the stream stayed
idle for ``idle_stop`` seconds (batch jobs, tests, benchmarks).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import ClassVar, Final, Literal

import pyarrow as pa
import structlog
from pydantic import Field, SecretStr
from redis.exceptions import ResponseError

from market_data_pipeline import records
from market_data_pipeline._arrow_ipc import (
    FIELD_DATA,
    FIELD_KIND,
    StreamClient,
    connect,
    decode,
)
from market_data_pipeline.components import Context, Params, Provider
from market_data_pipeline.exceptions import RecordError

__all__ = ["RedisStreamParams", "RedisStreamProvider"]

logger = structlog.get_logger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]
_PENDING: Final = "0"
_NEW: Final = ">"


class RedisStreamParams(Params):
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    stream: str = Field(default="md:ticks", min_length=1)
    group: str = Field(default="md-pipeline", min_length=1)
    consumer: str | None = Field(
        default=None, description="Stable name of this worker (default: host name and node id)."
    )
    start: Literal["0", "$"] = Field(
        default="0", description="Where a new group starts: 0 = the whole stream, $ = new entries."
    )
    block_ms: int = Field(default=1000, ge=1, description="Longest wait of one read.")
    count: int = Field(default=16, ge=1, description="Entries (batches) per read.")
    idle_stop: float | None = Field(
        default=None, gt=0, description="End after this many seconds without entries."
    )


class RedisStreamProvider(Provider[RedisStreamParams]):
    """Reads Arrow batches from a Redis stream with a consumer group (at least once)."""

    Params = RedisStreamParams
    description: ClassVar[str] = "Reads batches from a Redis stream (consumer group, acked)."

    def __init__(self, node_id: str, params: RedisStreamParams) -> None:
        super().__init__(node_id, params)
        self.consumer = params.consumer or f"{socket.gethostname()}-{node_id}"
        self.client: StreamClient | None = None
        self.acked = 0

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        self.client = connect(self.params.url.get_secret_value())
        await self._ensure_group(self.client)
        logger.info(
            "redis stream provider",
            node=self.node_id,
            stream=self.params.stream,
            group=self.params.group,
            consumer=self.consumer,
        )

    async def _ensure_group(self, client: StreamClient) -> None:
        p = self.params
        try:
            await client.xgroup_create(p.stream, p.group, id=p.start, mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()
        await super().close()

    async def batches(self) -> AsyncIterator[pa.Table]:
        client = self.client
        assert client is not None, "open() first"
        async for entry_id, table in self._entries(client):
            yield table
            # the runtime asks for the next batch only once this one was emitted downstream
            await client.xack(self.params.stream, self.params.group, entry_id)
            self.acked += 1

    async def _entries(self, client: StreamClient) -> AsyncIterator[tuple[bytes, pa.Table]]:
        cursor = _PENDING
        while True:  # entries delivered to this consumer before, never acknowledged
            entries = await self._read(client, cursor, block=None)
            if not entries:
                break
            for entry_id, fields in entries:
                cursor = entry_id.decode()
                yield entry_id, self._decode(entry_id, fields)
        idle_since = time.monotonic()
        stopping = self.context.stopping
        while not stopping.is_set():
            entries = await self._read(client, _NEW, block=self._block_ms())
            if not entries:
                idle = self.params.idle_stop
                if idle is not None and time.monotonic() - idle_since >= idle:
                    return
                continue
            idle_since = time.monotonic()
            for entry_id, fields in entries:
                yield entry_id, self._decode(entry_id, fields)

    def _block_ms(self) -> int:
        idle = self.params.idle_stop
        block = self.params.block_ms
        return block if idle is None else max(1, min(block, round(idle * 1000)))

    async def _read(self, client: StreamClient, cursor: str, *, block: int | None) -> list[Entry]:
        p = self.params
        reply = await client.xreadgroup(
            p.group, self.consumer, {p.stream: cursor}, count=p.count, block=block
        )
        if not reply:
            return []
        return [(entry_id, fields) for entry_id, fields in reply[0][1] if fields]

    def _decode(self, entry_id: bytes, fields: dict[bytes, bytes]) -> pa.Table:
        where = f"redis stream {self.params.stream} entry {entry_id.decode()}"
        data = fields.get(FIELD_DATA)
        if data is None:
            raise RecordError(f"no {FIELD_DATA.decode()!r} field", source=where)
        try:
            table = decode(data)
        except pa.ArrowInvalid as error:
            raise RecordError(f"not an Arrow IPC stream: {error}", source=where) from None
        announced = fields.get(FIELD_KIND, b"").decode()
        kind = records.kind_of(table)
        if announced and announced != "other" and (kind is None or str(kind) != announced):
            raise RecordError(
                f"announced {announced} but holds {kind or table.schema}", source=where
            )
        return table

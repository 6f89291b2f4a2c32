"""Write batches to a Redis stream: the partitioned tick transport between processes.

One stream entry per batch (``kind``, ``rows`` and the Arrow IPC bytes in ``data``), never
one tick per message: redis-py tops out at tens of thousands of messages per second, while
a 10k-row batch is one message. ``maxlen`` trims the stream approximately (in entries, i.e.
batches); ``None`` keeps everything. Read it back with the ``redis_stream`` provider (a
consumer group). Partitioning is a graph concern: put a ``hash_partition`` operator in front
of several sinks, one stream each.

The URL may carry a password: it is a ``SecretStr`` and never logged.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pyarrow as pa
import structlog
from pydantic import Field, SecretStr

from market_data_pipeline._arrow_ipc import DEFAULT_URL, StreamClient, connect, entry, node_url
from market_data_pipeline.components import Context, Params, SinkComponent

__all__ = ["RedisStreamSink", "RedisStreamSinkParams"]

logger = structlog.get_logger(__name__)


class RedisStreamSinkParams(Params):
    url: SecretStr = Field(
        default=SecretStr(DEFAULT_URL),
        description="The Redis server (unset: MDP_REDIS_URL when set, else this default).",
    )
    stream: str = Field(default="md:ticks", min_length=1)
    maxlen: int | None = Field(
        default=100_000, ge=1, description="Approximate bound in entries (batches)."
    )
    compression: Literal["lz4", "zstd"] | None = Field(
        default=None, description="Compress the Arrow buffers (CPU for bandwidth)."
    )


class RedisStreamSink(SinkComponent[RedisStreamSinkParams]):
    """Appends one Redis stream entry per batch (Arrow IPC)."""

    Params = RedisStreamSinkParams
    description: ClassVar[str] = "Writes batches to a Redis stream (one Arrow entry per batch)."

    def __init__(self, node_id: str, params: RedisStreamSinkParams) -> None:
        super().__init__(node_id, params)
        self.client: StreamClient | None = None
        self.entries = 0

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        self.client = connect(node_url(self.params, ctx.services))
        logger.info("redis stream sink", node=self.node_id, stream=self.params.stream)

    async def write(self, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        assert self.client is not None, "open() first"
        fields = entry(batch, compression=self.params.compression)
        await self.client.xadd(self.params.stream, fields, maxlen=self.params.maxlen)
        self.entries += 1
        self.context.count("written", batch.num_rows)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()
        await super().close()

"""Write batches to a Redis stream: the partitioned tick transport between processes.

One stream entry per batch (``kind``, ``rows`` and the Arrow IPC bytes in ``data``), never
one tick per message: redis-py tops out at tens of thousands of messages per second, while
a 10k-row batch is one message. ``maxlen`` trims the stream approximately (in entries, i.e.
batches); ``None`` keeps everything. Read it back with the ``redis_stream`` provider (a
consumer group). Partitioning is a graph concern: put a ``hash_partition`` operator in front
of several sinks, one stream each.

Redis going away (a restart, a crash, a network cut) does not end the feed: ``write``
retries the batch with backoff and jitter until Redis answers again, for at most
``reconnect_timeout`` seconds of one outage (then the job fails, naming the server), and
the graph behind it waits (backpressure). No batch is skipped. A write whose outcome is
unknown (the connection broke before the reply) may have been applied: each entry carries
``src`` (this sink's random id) and ``seq`` (its number), and the retry first looks for
them among the stream's last entries, so the batch is added once. Beyond that window the
transport is at least once (the store's upsert is idempotent; Redis before 8 has no
idempotent ``XADD``). What Redis acknowledged survives a crash of Redis only with its
persistence on (AOF, ``appendfsync always`` or ``everysec``: docs/pipeline.md).

The URL may carry a password: it is a ``SecretStr`` and never logged.
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Final, Literal

import pyarrow as pa
import structlog
from pydantic import Field, SecretStr

from market_data_pipeline._arrow_ipc import (
    DEFAULT_URL,
    FIELD_SEQ,
    FIELD_SOURCE,
    RedisLink,
    StreamClient,
    entry,
    node_url,
)
from market_data_pipeline.components import Context, Params, SinkComponent

__all__ = ["RedisStreamSink", "RedisStreamSinkParams"]

logger = structlog.get_logger(__name__)

_LOOK_BACK: Final = 32
"""Entries a retried write looks through for its own (several feeds may share a stream)."""


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
    reconnect_timeout: float = Field(
        default=300.0,
        gt=0,
        allow_inf_nan=False,
        description=(
            "Seconds one Redis outage may last: writes retry (backoff with jitter) until"
            " then, and the job fails after."
        ),
    )


class RedisStreamSink(SinkComponent[RedisStreamSinkParams]):
    """Appends one Redis stream entry per batch (Arrow IPC)."""

    Params = RedisStreamSinkParams
    description: ClassVar[str] = "Writes batches to a Redis stream (one Arrow entry per batch)."

    def __init__(self, node_id: str, params: RedisStreamSinkParams) -> None:
        super().__init__(node_id, params)
        self.link: RedisLink | None = None
        self.entries = 0
        self.source = uuid.uuid4().hex.encode()
        """This sink's id in the entries it writes (``src``)."""
        self.retried = 0
        """Writes found already applied after a broken connection (not added again)."""

    @property
    def client(self) -> StreamClient | None:
        return self.link.client if self.link is not None else None

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        self.link = RedisLink(
            node_url(self.params, ctx.services),
            node_id=self.node_id,
            reconnect_timeout=self.params.reconnect_timeout,
            on_reconnect=self._reconnected,
        )
        logger.info(
            "redis stream sink", node=self.node_id, stream=self.params.stream, redis=self.link.where
        )

    def _reconnected(self) -> None:
        self.context.count("reconnects")
        metrics = self.context.metrics
        if metrics is not None:
            metrics.redis_reconnects.labels(job=self.context.job, node=self.node_id).inc()

    async def write(self, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        link = self.link
        assert link is not None, "open() first"
        p = self.params
        seq = str(self.entries).encode()
        fields = entry(batch, compression=p.compression)
        fields[FIELD_SOURCE] = self.source
        fields[FIELD_SEQ] = seq
        outages = link.outages

        async def attempt() -> bytes:
            if link.outages != outages:  # an earlier attempt broke: was it applied?
                found = await self._find(link.client, seq)
                if found is not None:
                    self.retried += 1
                    return found
            return await link.client.xadd(p.stream, fields, maxlen=p.maxlen)

        await link.call(attempt)
        self.entries += 1
        self.context.count("written", batch.num_rows)

    async def _find(self, client: StreamClient, seq: bytes) -> bytes | None:
        """The id of this sink's entry number ``seq`` among the stream's last entries."""
        for entry_id, fields in await client.xrevrange(self.params.stream, count=_LOOK_BACK):
            if fields.get(FIELD_SOURCE) == self.source and fields.get(FIELD_SEQ) == seq:
                return entry_id
        return None

    async def close(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            await link.aclose()
        await super().close()

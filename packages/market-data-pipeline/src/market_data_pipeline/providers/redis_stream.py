"""Read batches from a Redis stream through a consumer group: the tick transport's far end.

Each entry is one batch written by the ``redis_stream`` sink (Arrow IPC in ``data``). Workers
that share a ``group`` share the entries: N pipeline processes on N machines split one
stream, each entry going to one of them.

Delivery is at least once, acknowledged after commit: behind each entry's batch goes a
mark (:mod:`market_data_pipeline.marks`), and the entry is acknowledged (``XACK``) only once
that mark reached every sink, i.e. once every bar its ticks went into is purged from the
resamplers' windows and committed by the store. The operators' stamps (their latest event
time, in nanoseconds) are saved in the same transaction (hash ``<stream>:<group>:stamps:ns``)
and given back to them when a worker starts, so re-delivered ticks are late or not exactly
as they were. (Stamps saved by an earlier version, in microseconds under
``<stream>:<group>:stamps``, are read when there are no others.)

Entries carry whole Arrow batches: every column of the records (nanosecond times, receive
times, ordinals, versions) arrives as it was written.

On start the consumer first re-reads its own entries that were delivered but never
acknowledged (a crash), then claims (``XAUTOCLAIM``) entries other consumers of the group
left pending for more than ``claim_idle`` seconds (a worker that died and did not come
back), and claims again whenever the stream is idle. A batch may thus arrive twice; the
store's idempotent upsert makes that harmless.

For exact bars, one consumer reads a stream at a time (its windows must see every tick of
its symbols): scale out with several streams (partitions, the ``hash_partition`` operator
in front of one ``redis_stream`` sink each), a worker per stream.

The provider ends when the job stops, or when the stream stayed idle for ``idle_stop``
seconds (batch jobs, tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar, Final, Literal

import pyarrow as pa
import structlog
from pydantic import Field, SecretStr
from redis.exceptions import ResponseError

from market_data_pipeline import records
from market_data_pipeline._arrow_ipc import (
    DEFAULT_URL,
    FIELD_DATA,
    FIELD_KIND,
    StreamClient,
    connect,
    decode,
    node_url,
)
from market_data_pipeline.components import Context, Emit, Params, Provider
from market_data_pipeline.exceptions import RecordError
from market_data_pipeline.marks import Mark

__all__ = ["RedisStreamParams", "RedisStreamProvider"]

logger = structlog.get_logger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]
_PENDING: Final = "0"
_NEW: Final = ">"


class RedisStreamParams(Params):
    url: SecretStr = Field(
        default=SecretStr(DEFAULT_URL),
        description="The Redis server (unset: MDP_REDIS_URL when set, else this default).",
    )
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
    claim_idle: float | None = Field(
        default=60.0,
        gt=0,
        description=(
            "Claim entries other consumers left pending this many seconds (a dead worker's);"
            " null: never."
        ),
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
        self.claimed = 0
        self._stamps_key = f"{params.stream}:{params.group}:stamps:ns"
        self._micros_key = f"{params.stream}:{params.group}:stamps"
        """Where an earlier version saved the stamps, in microseconds."""
        self._restored: dict[str, int] = {}
        self._marks: deque[Mark] = deque()
        self._inflight: set[bytes] = set()
        """Entries emitted and not acknowledged yet (never claimed back from oneself)."""
        self._arrived = asyncio.Event()
        self._acker: asyncio.Task[None] | None = None
        self._claimed_at = 0.0

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        self.client = connect(node_url(self.params, ctx.services))
        await self._ensure_group(self.client)
        saved = await self.client.hgetall(self._stamps_key)
        self._restored = {k.decode(): int(v) for k, v in saved.items()}
        if not saved:
            micros = await self.client.hgetall(self._micros_key)
            self._restored = {k.decode(): int(v) * 1000 for k, v in micros.items()}
        self._acker = asyncio.create_task(self._acknowledge(), name=f"{self.node_id}-acker")
        logger.info(
            "redis stream provider",
            node=self.node_id,
            stream=self.params.stream,
            group=self.params.group,
            consumer=self.consumer,
            restored=self._restored or None,
        )

    @property
    def restored(self) -> Mapping[str, int]:
        return self._restored

    async def _ensure_group(self, client: StreamClient) -> None:
        p = self.params
        try:
            await client.xgroup_create(p.stream, p.group, id=p.start, mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        else:  # a new group starts with no stamps (a deleted group's would make ticks late)
            await client.delete(self._stamps_key, self._micros_key)

    async def close(self) -> None:
        acker, self._acker = self._acker, None
        if acker is not None:
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
        client, self.client = self.client, None
        try:
            if client is not None and self._marks and self._marks[0].complete:
                # every node has ended: what completed is all that will
                await self._ack_complete(client)
        finally:
            if client is not None:
                await client.aclose()
            await super().close()

    async def run(self, emit: Emit) -> None:
        """Emit each entry's batch, then a mark that acknowledges the entry once complete."""
        ctx = self.context
        client = self.client
        assert client is not None, "open() first"
        async for entry_id, table in self._entries(client):
            if self._acker is not None and self._acker.done():
                self._acker.result()  # acknowledging failed: raise it (nothing is acked)
            if ctx.stopping.is_set():
                break
            if table.num_rows:
                await ctx.rate.acquire(table.num_rows)
                if ctx.stopping.is_set():  # not emitted: delivered again to whoever resumes
                    break
                await emit(table)
            mark = Mark(entry_id, ctx.paths)
            self._inflight.add(entry_id)
            self._marks.append(mark)
            self._arrived.set()
            await emit.mark(mark)

    async def batches(self) -> AsyncIterator[pa.Table]:
        """The entries' batches, never acknowledged (:meth:`run` emits them with marks)."""
        client = self.client
        assert client is not None, "open() first"
        async for _entry_id, table in self._entries(client):
            yield table

    async def _acknowledge(self) -> None:
        """Acknowledge entries in order as their marks complete (several per round trip)."""
        client = self.client
        assert client is not None
        while True:
            while not self._marks:
                self._arrived.clear()
                await self._arrived.wait()
            await self._marks[0].wait()
            await self._ack_complete(client)

    async def _ack_complete(self, client: StreamClient) -> None:
        """XACK the complete marks at the head, and save their stamps, in one transaction."""
        done: list[Mark] = []
        while self._marks and self._marks[0].complete:
            done.append(self._marks.popleft())
        if not done:
            return
        stamps: dict[str, int] = {}
        for mark in done:
            stamps.update(mark.stamps)
        pipe = client.pipeline(transaction=True)
        pipe.xack(self.params.stream, self.params.group, *(m.token for m in done))
        if stamps:
            pipe.hset(self._stamps_key, mapping=stamps)
        await pipe.execute()
        self._inflight.difference_update(m.token for m in done)
        self.acked += len(done)
        self.context.count("acked", len(done))

    async def _entries(self, client: StreamClient) -> AsyncIterator[tuple[bytes, pa.Table]]:
        cursor = _PENDING
        while True:  # entries delivered to this consumer before, never acknowledged
            entries = await self._read(client, cursor, block=None)
            if not entries:
                break
            for entry_id, fields in entries:
                cursor = entry_id.decode()
                yield entry_id, self._decode(entry_id, fields)
        async for item in self._take_over(client):
            yield item
        idle_since = time.monotonic()
        stopping = self.context.stopping
        while not stopping.is_set():
            entries = await self._read(client, _NEW, block=self._block_ms())
            if not entries:
                async for item in self._claim(client):
                    idle_since = time.monotonic()
                    yield item
                idle = self.params.idle_stop
                if idle is not None and time.monotonic() - idle_since >= idle:
                    return
                continue
            idle_since = time.monotonic()
            for entry_id, fields in entries:
                yield entry_id, self._decode(entry_id, fields)

    async def _take_over(self, client: StreamClient) -> AsyncIterator[tuple[bytes, pa.Table]]:
        """On start, before any new entry: the entries other consumers left pending. A
        consumer that just died left them idle for less than ``claim_idle``: wait until
        they can be claimed (for at most twice that: the other may be alive), so that the
        old ticks come before the new ones and none is taken for late."""
        p = self.params
        if p.claim_idle is None:
            return
        deadline = time.monotonic() + 2 * p.claim_idle
        stopping = self.context.stopping
        while not stopping.is_set():
            self._claimed_at = 0.0
            async for item in self._claim(client):
                yield item
            others = await self._pending_elsewhere(client)
            if not others or time.monotonic() >= deadline:
                if others:
                    logger.warning(
                        "entries stay pending on another consumer of the group",
                        node=self.node_id,
                        stream=p.stream,
                        entries=others,
                    )
                return
            await asyncio.sleep(min(p.claim_idle / 10, 1.0))

    async def _pending_elsewhere(self, client: StreamClient) -> int:
        summary = await client.xpending(self.params.stream, self.params.group)
        mine = self.consumer.encode()
        return sum(
            int(c["pending"])
            for c in summary.get("consumers") or []
            if (c["name"] if isinstance(c["name"], bytes) else str(c["name"]).encode()) != mine
        )

    async def _claim(self, client: StreamClient) -> AsyncIterator[tuple[bytes, pa.Table]]:
        """Entries other consumers left pending past ``claim_idle`` (at most once per
        ``claim_idle / 2`` seconds); each becomes this consumer's."""
        p = self.params
        if p.claim_idle is None or time.monotonic() - self._claimed_at < p.claim_idle / 2:
            return
        self._claimed_at = time.monotonic()
        if not await self._pending_elsewhere(client):
            return  # XAUTOCLAIM would take this consumer's own held entries too
        start = "0-0"
        while True:
            reply = await client.xautoclaim(
                p.stream,
                p.group,
                self.consumer,
                min_idle_time=round(p.claim_idle * 1000),
                start_id=start,
                count=p.count,
            )
            start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:  # trimmed (maxlen) before anyone read them: nothing to claim
                logger.warning(
                    "pending entries were trimmed from the stream before they were read",
                    node=self.node_id,
                    stream=p.stream,
                    entries=len(deleted),
                )
                self.context.count("trimmed", len(deleted))
                await client.xack(p.stream, p.group, *deleted)
            for entry_id, fields in reply[1]:
                if not fields or entry_id in self._inflight:
                    continue  # deleted, or this consumer's own (held behind a window)
                self.claimed += 1
                self.context.count("claimed")
                yield entry_id, self._decode(entry_id, fields)
            if start == "0-0":
                return

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

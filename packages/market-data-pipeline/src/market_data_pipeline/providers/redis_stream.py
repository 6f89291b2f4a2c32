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

Redis going away does not end it: every command is retried with backoff and jitter until
Redis answers again, for at most ``reconnect_timeout`` seconds of one outage (then the
job fails, naming the server without its password; see ``_arrow_ipc.RedisLink``). After
an outage the consumer first re-reads its own pending entries that it has not emitted
(a read whose reply was lost delivered them), then reads on; the time Redis was away
does not count towards ``idle_stop``. A job stopped (or a provider closed) while Redis is
away stops waiting for it: what was not acknowledged is delivered again later.

Losses are detected, never passed over: what Redis kept is checked against a small state
file kept outside Redis (``<state_dir>/redis_stream/<stream>/<group>/<consumer>.json``,
``state_dir`` from the param, else ``MDP_STATE_DIR`` of ``mdp run``, whose default is
``.mdp-state`` in the working directory; a ``GraphRuntime`` given neither keeps it in
memory, for the run): the last entry this consumer acknowledged, the highest it was delivered, and
the stream's ``entries-added`` counter and last id (from ``XINFO STREAM``, refreshed at
most every few seconds). At start and after every outage, Redis lost entries when

- ``group_vanished``: the stream or the consumer group is gone (it is created again at
  ``0``, the start of what the stream holds now);
- ``counter_back``: the stream's ``entries-added`` counter went back;
- ``stream_back``: its last id is below an entry this consumer was delivered;
- ``group_back``: the group's ``last-delivered-id`` is below an entry this consumer
  acknowledged (Redis came back from an older state);
- ``stream_after``: the stream now starts after every entry this consumer was delivered
  (what came between was removed before it was read);
- ``trimmed``: pending entries were trimmed (``maxlen``) before they were processed.

Each loss is logged as an error, counted (``losses`` in the summary,
``pipeline_redis_stream_losses_total{reason}``), added to the runtime's loss report
(health degraded; ``mdp run`` exits with 3, ``DataLossError``) and becomes the new
baseline. Only Redis' persistence (AOF, docs/pipeline.md) avoids them. Delete the state
file to start a consumer afresh on purpose (a stream deleted and created again). In a
group shared by several consumers, a consumer that comes back after the others read and
trimmed past what it had seen reports ``stream_after`` too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import quote

import pyarrow as pa
import structlog
from pydantic import Field, SecretStr
from redis.exceptions import ResponseError

from market_data_pipeline import records
from market_data_pipeline._arrow_ipc import (
    DATA_LOSS_SERVICE,
    DEFAULT_URL,
    FIELD_DATA,
    FIELD_KIND,
    STATE_DIR_SERVICE,
    RedisLink,
    StreamClient,
    decode,
    node_url,
)
from market_data_pipeline.components import Context, Emit, Params, Provider
from market_data_pipeline.exceptions import RecordError, RedisUnavailableError
from market_data_pipeline.marks import Mark

__all__ = [
    "DATA_LOSS_SERVICE",
    "STATE_DIR_SERVICE",
    "RedisStreamParams",
    "RedisStreamProvider",
]

logger = structlog.get_logger(__name__)

T = TypeVar("T")
Entry = tuple[bytes, dict[bytes, bytes]]
_PENDING: Final = "0"
_NEW: Final = ">"
_INFO_EVERY: Final = 5.0
"""Seconds between two reads of the stream's counters for the state file."""


class _Resume(Exception):  # noqa: N818 - a signal, not an error
    """An outage happened since the reader last looked: resume before reading on."""


def _id(value: bytes | str | None) -> tuple[int, int]:
    """A stream id as a comparable pair (``None``: 0-0)."""
    if value is None:
        return (0, 0)
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq or 0))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(slots=True)
class _State:
    """What this consumer knows about the stream, kept outside Redis."""

    server: str
    stream: str
    group: str
    consumer: str
    acked: str | None = None
    """The highest entry this consumer acknowledged."""
    delivered: str | None = None
    """The highest entry delivered to this consumer."""
    entries_added: int | None = None
    """The stream's ``entries-added`` counter when last read."""
    last_id: str | None = None
    """The stream's ``last-generated-id`` when last read."""


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
    reconnect_timeout: float = Field(
        default=300.0,
        gt=0,
        allow_inf_nan=False,
        description=(
            "Seconds one Redis outage may last: commands retry (backoff with jitter) until"
            " then, and the job fails after."
        ),
    )
    state_dir: str | None = Field(
        default=None,
        description=(
            "Directory of the consumer's state file, to find entries Redis lost (unset:"
            " MDP_STATE_DIR of mdp run, default .mdp-state)."
        ),
    )


class RedisStreamProvider(Provider[RedisStreamParams]):
    """Reads Arrow batches from a Redis stream with a consumer group (at least once)."""

    Params = RedisStreamParams
    description: ClassVar[str] = "Reads batches from a Redis stream (consumer group, acked)."

    def __init__(self, node_id: str, params: RedisStreamParams) -> None:
        super().__init__(node_id, params)
        self.consumer = params.consumer or f"{socket.gethostname()}-{node_id}"
        self.link: RedisLink | None = None
        self.acked = 0
        self.claimed = 0
        self.losses: list[str] = []
        """What Redis lost, one message per loss found."""
        self._state: _State | None = None
        self._state_path: Path | None = None
        self._info_at = 0.0
        self._outages_seen = 0
        self._closing = False
        self._before_loss: set[bytes] = set()
        """Entries emitted before a loss was found (not part of the new baseline)."""
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

    @property
    def client(self) -> StreamClient | None:
        return self.link.client if self.link is not None else None

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        p = self.params
        self.link = RedisLink(
            node_url(p, ctx.services),
            node_id=self.node_id,
            reconnect_timeout=p.reconnect_timeout,
            on_reconnect=self._reconnected,
            give_up=lambda: self._closing or ctx.stopping.is_set(),
        )
        self._state_path = self._path_of_state(p.state_dir or ctx.services.state_dir)
        self._state = self._load_state()
        client = self.link.client
        if self._state is None:  # the first run of this consumer: the baseline
            self._state = _State(self.link.where, p.stream, p.group, self.consumer)
            await self._ensure_group(client)
            await self._refresh_info(client)
        else:
            await self._check(client, when="start")
        saved = await self._call(lambda: client.hgetall(self._stamps_key))
        self._restored = {k.decode(): int(v) for k, v in saved.items()}
        if not saved:
            micros = await self._call(lambda: client.hgetall(self._micros_key))
            self._restored = {k.decode(): int(v) * 1000 for k, v in micros.items()}
        self._acker = asyncio.create_task(self._acknowledge(), name=f"{self.node_id}-acker")
        logger.info(
            "redis stream provider",
            node=self.node_id,
            stream=self.params.stream,
            group=self.params.group,
            consumer=self.consumer,
            redis=self.link.where,
            state=str(self._state_path),
            restored=self._restored or None,
        )

    async def _call(self, do: Callable[[], Awaitable[T]]) -> T:
        assert self.link is not None, "open() first"
        return await self.link.call(do)

    def _reconnected(self) -> None:
        self.context.count("reconnects")
        metrics = self.context.metrics
        if metrics is not None:
            metrics.redis_reconnects.labels(job=self.context.job, node=self.node_id).inc()

    @property
    def restored(self) -> Mapping[str, int]:
        return self._restored

    async def _ensure_group(self, client: StreamClient, start: str | None = None) -> bool:
        """Create the group (at ``start``, else the ``start`` param) unless it exists;
        whether it was created."""
        p = self.params
        try:
            await self._call(
                lambda: client.xgroup_create(p.stream, p.group, id=start or p.start, mkstream=True)
            )
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
            return False
        # a new group starts with no stamps (a deleted group's would make ticks late)
        await self._call(lambda: client.delete(self._stamps_key, self._micros_key))
        return True

    # -- what Redis kept ----------------------------------------------------------------

    def _path_of_state(self, state_dir: str | os.PathLike[str] | None) -> Path | None:
        if state_dir is None:  # a GraphRuntime of its own: the state lives in memory
            return None
        p = self.params
        return (
            Path(state_dir).expanduser()
            / "redis_stream"
            / quote(p.stream, safe="")
            / quote(p.group, safe="")
            / f"{quote(self.consumer, safe='')}.json"
        )

    def _load_state(self) -> _State | None:
        path = self._state_path
        assert self.link is not None
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = _State(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            logger.warning(
                "unreadable redis stream state: starting a new baseline",
                node=self.node_id,
                path=str(path),
                error=str(error),
            )
            return None
        if state.server != self.link.where:
            logger.warning(
                "the redis stream state is of another server: starting a new baseline",
                node=self.node_id,
                path=str(path),
                was=state.server,
                now=self.link.where,
            )
            return None
        return state

    def _save_state(self) -> None:
        """Write the state file (a temporary file renamed over it: never half written)."""
        path, state = self._state_path, self._state
        if path is None or state is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(asdict(state)), encoding="utf-8")
            tmp.replace(path)
        except OSError as error:  # the check is less sharp; the transport still works
            logger.warning("cannot write the redis stream state", path=str(path), error=str(error))

    async def _stream_info(self, client: StreamClient) -> dict[str, Any] | None:
        try:
            return await self._call(lambda: client.xinfo_stream(self.params.stream))
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return None
            raise

    async def _refresh_info(self, client: StreamClient) -> None:
        """Read the stream's counters into the state (and save it)."""
        info = await self._stream_info(client)
        state = self._state
        assert state is not None
        if info is not None:
            state.entries_added = _int(info.get("entries-added"))
            state.last_id = _text(info.get("last-generated-id"))
        self._info_at = time.monotonic()
        self._save_state()

    async def _check(self, client: StreamClient, *, when: str) -> None:
        """Compare what Redis holds with the state; report each loss, then take what Redis
        holds as the new baseline (a vanished group is created again, at ``0``)."""
        p, state = self.params, self._state
        assert state is not None
        info = await self._stream_info(client)
        group = None
        if info is not None:
            groups = await self._call(lambda: client.xinfo_groups(p.stream))
            group = next((g for g in groups if _text(g.get("name")) == p.group), None)
        found: list[tuple[str, str]] = []
        if info is None or group is None:
            what = "the stream and its consumer group are" if info is None else "the group is"
            found.append(
                (
                    "group_vanished",
                    f"{what} gone: entries after {state.acked or 'the start'} that this"
                    " consumer had not acknowledged, and the group's pending entries and"
                    " operator stamps, were lost",
                )
            )
        else:
            added = _int(info.get("entries-added"))
            last_id = _text(info.get("last-generated-id"))
            first = info.get("first-entry")
            first_id = _text(first[0]) if first else None
            delivered_to_group = _text(group.get("last-delivered-id"))
            if (
                state.entries_added is not None
                and added is not None
                and added < state.entries_added
            ):
                found.append(
                    (
                        "counter_back",
                        f"the stream's entries-added counter went back from"
                        f" {state.entries_added} to {added}: at least"
                        f" {state.entries_added - added} entries were lost",
                    )
                )
            if not found and state.delivered and _id(last_id) < _id(state.delivered):
                found.append(
                    (
                        "stream_back",
                        f"the stream's last id {last_id} is below {state.delivered}, an entry"
                        " this consumer was delivered: entries after it were lost",
                    )
                )
            if state.acked and _id(delivered_to_group) < _id(state.acked):
                found.append(
                    (
                        "group_back",
                        f"the group's last-delivered-id {delivered_to_group} is below"
                        f" {state.acked}, the last entry this consumer acknowledged: Redis"
                        " came back from an older state, and entries written after it were"
                        " lost",
                    )
                )
            if state.delivered and first_id is not None and _id(first_id) > _id(state.delivered):
                found.append(
                    (
                        "stream_after",
                        f"the stream now starts at {first_id}, after {state.delivered}, the"
                        " last entry this consumer was delivered: the entries between were"
                        " removed before they were read",
                    )
                )
        for reason, message in found:
            self._lost(reason, f"{message} ({when})")
        if info is None or group is None:
            await self._ensure_group(client, start="0")
        if found:  # the new baseline: what Redis holds now (entries emitted before it
            state.acked = state.delivered = None  # are no part of it when acknowledged)
            self._before_loss.update(self._inflight)
        await self._refresh_info(client)

    def _lost(self, reason: str, message: str) -> None:
        p = self.params
        text = f"redis stream {p.stream} (group {p.group}, consumer {self.consumer}): {message}"
        self.losses.append(text)
        logger.error(
            "redis lost stream entries",
            node=self.node_id,
            stream=p.stream,
            group=p.group,
            consumer=self.consumer,
            reason=reason,
            redis=self.link.where if self.link is not None else None,
            detail=message,
            hint="turn Redis persistence on (AOF): docs/pipeline.md",
        )
        ctx = self.context
        ctx.count("losses")
        if ctx.metrics is not None:
            ctx.metrics.redis_losses.labels(job=ctx.job, node=self.node_id, reason=reason).inc()
        ctx.services.data_losses.append(text)

    def _delivered(self, entry_id: bytes) -> None:
        state = self._state
        if state is not None and _id(entry_id) > _id(state.delivered):
            state.delivered = entry_id.decode()

    async def close(self) -> None:
        self._closing = True  # Redis away now: what is not acknowledged comes again later
        acker, self._acker = self._acker, None
        if acker is not None:
            acker.cancel()
            await asyncio.gather(acker, return_exceptions=True)
        link, client = self.link, self.client
        try:
            if client is not None and self._marks and self._marks[0].complete:
                # every node has ended: what completed is all that will
                await self._ack_complete(client)
        finally:
            self.link = None
            if link is not None:
                await link.aclose()
            await super().close()

    async def run(self, emit: Emit) -> None:
        """Emit each entry's batch, then a mark that acknowledges the entry once complete."""
        try:
            await self._run(emit)
        except RedisUnavailableError:
            if not self.context.stopping.is_set():
                raise
            # stopped while Redis was away: what was not acknowledged is delivered again

    async def _run(self, emit: Emit) -> None:
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
        async for entry_id, table in self._entries(client):
            self._inflight.add(entry_id)  # never acknowledged; never re-read after an outage
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

        async def transaction() -> list[Any]:  # XACK and HSET may be repeated: idempotent
            pipe = client.pipeline(transaction=True)
            pipe.xack(self.params.stream, self.params.group, *(m.token for m in done))
            if stamps:
                pipe.hset(self._stamps_key, mapping=stamps)
            return list(await pipe.execute())

        await self._call(transaction)
        self._inflight.difference_update(m.token for m in done)
        self.acked += len(done)
        self.context.count("acked", len(done))
        state = self._state
        if state is not None:
            tokens = [m.token for m in done if m.token not in self._before_loss]
            highest = max(tokens, key=_id, default=None)
            if highest is not None and _id(highest) > _id(state.acked):
                state.acked = highest.decode()
            if time.monotonic() - self._info_at >= _INFO_EVERY:
                await self._refresh_info(client)
            else:
                self._save_state()

    async def _entries(self, client: StreamClient) -> AsyncIterator[tuple[bytes, pa.Table]]:
        assert self.link is not None
        self._outages_seen = self.link.outages
        async for item in self._own_pending(client):
            yield item
        async for item in self._take_over(client):
            yield item
        idle_since = time.monotonic()
        stopping = self.context.stopping
        while not stopping.is_set():
            if self.link.outages != self._outages_seen:  # Redis was away: resume first
                self._outages_seen = self.link.outages
                await self._check(client, when="after reconnecting")
                async for item in self._own_pending(client):
                    yield item
                idle_since = time.monotonic()  # the outage was no idleness
                continue
            try:
                entries = await self._read(client, _NEW, block=self._block_ms())
            except _Resume:
                continue
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
                self._delivered(entry_id)
                yield entry_id, self._decode(entry_id, fields)

    async def _own_pending(self, client: StreamClient) -> AsyncIterator[tuple[bytes, pa.Table]]:
        """Entries delivered to this consumer before and never acknowledged (a crash, or
        a read whose reply an outage lost), but for those already emitted; entries
        trimmed from the stream before they were processed are lost (reported)."""
        cursor = _PENDING
        while True:
            held = self._held()
            try:
                entries = await self._read(client, cursor, block=None)
            except _Resume:  # the group had vanished (reported): nothing of it is pending
                return
            if not entries:
                return
            gone: list[bytes] = []
            for entry_id, fields in entries:
                cursor = entry_id.decode()
                if not fields:
                    gone.append(entry_id)
                elif entry_id not in held and entry_id not in self._inflight:
                    self._delivered(entry_id)
                    yield entry_id, self._decode(entry_id, fields)
            if gone:
                await self._trimmed(client, gone)

    def _held(self) -> frozenset[bytes]:
        """The entries emitted and not acknowledged, taken before a read of pending entries.

        The acker acknowledges on another connection while the read is under way: Redis
        may answer the read while they are still pending and the acknowledgement's reply
        be taken first (a loaded event loop resumes the two in any order), taking them out
        of ``_inflight``. They count as held for that read: emitted once, never again."""
        return frozenset(self._inflight)

    async def _trimmed(self, client: StreamClient, gone: list[bytes]) -> None:
        """Pending entries that were trimmed (``maxlen``) before anyone processed them."""
        p = self.params
        self.context.count("trimmed", len(gone))
        self._lost(
            "trimmed",
            f"{len(gone)} pending entries ({gone[0].decode()} .. {gone[-1].decode()}) were"
            " trimmed from the stream before they were processed (maxlen too small for"
            " the backlog)",
        )
        await self._call(lambda: client.xack(p.stream, p.group, *gone))

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
        summary = await self._call(lambda: client.xpending(self.params.stream, self.params.group))
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
            held = self._held()
            reply = await self._call(
                functools.partial(
                    client.xautoclaim,
                    p.stream,
                    p.group,
                    self.consumer,
                    min_idle_time=round(p.claim_idle * 1000),
                    start_id=start,
                    count=p.count,
                )
            )
            start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:  # trimmed (maxlen) before anyone processed them: lost
                await self._trimmed(client, list(deleted))
            for entry_id, fields in reply[1]:
                if not fields or entry_id in held or entry_id in self._inflight:
                    continue  # deleted, or this consumer's own (held behind a window)
                self._delivered(entry_id)
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
        """One XREADGROUP (deleted entries come with no fields). Reading new entries
        (``>``) is not repeated after an outage: it raises ``_Resume``, for the caller to
        re-read this consumer's pending entries first (the lost reply may have delivered
        some), in order."""
        p = self.params
        link = self.link
        assert link is not None
        outages = link.outages

        async def attempt() -> Any:
            if cursor == _NEW and link.outages != outages:
                raise _Resume
            return await client.xreadgroup(
                p.group, self.consumer, {p.stream: cursor}, count=p.count, block=block
            )

        try:
            reply = await self._call(attempt)
        except ResponseError as error:
            if not str(error).startswith("NOGROUP"):
                raise
            await self._check(client, when="reading")  # the group vanished: say so
            raise _Resume from None
        if not reply:
            return []
        return [(entry_id, fields or {}) for entry_id, fields in reply[0][1]]

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


def _int(value: Any) -> int | None:
    return None if value is None else int(value)

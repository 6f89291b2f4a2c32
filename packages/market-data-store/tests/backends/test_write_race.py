"""The write coordinator's chunks under fire, on real SQLite and PostgreSQL: concurrent
writers submit the versions of shared keys as model chunks and as Arrow chunks, in random
order and sizes, while the backend fails writes (before committing, and after: a retried
write that had committed) and the coordinator is restarted twice (drained, then aborted into
the dead-letter file, replayed at the end). Afterwards every key holds what the simple model
(``market_data_core.testing.versions.newest``) says: the newest version of each bar and
trade key, and every distinct tick exactly once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from market_data_core import Bar, Trade, from_ns
from market_data_core.columns import Kind, conform, from_models
from market_data_core.testing import T0
from market_data_core.testing.versions import key_of, newest
from market_data_store.backends.base import Record, WriteResult
from market_data_store.chunks import ArrowChunk, ModelChunk
from market_data_store.coordinator import CoordinatorState, WriteCoordinator
from market_data_store.dlq import FileDeadLetterStore
from market_data_store.exceptions import CoordinatorStoppedError, TransientBackendError
from market_data_store.retry import CircuitBreaker, RetryPolicy

pytestmark = pytest.mark.asyncio

SYMBOLS = ["A", "B", "C"]
STARTS = [T0 + timedelta(minutes=m) for m in range(3)]
VERSIONS_PER_KEY = 4
TICKS_PER_SYMBOL = 40
WRITERS = 5
WIDE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


@pytest.fixture
def backend(any_backend: Any) -> Any:
    """An open backend on a fresh database migrated to head (SQLite, PostgreSQL)."""
    return any_backend


class _Failing:
    """The backend, failing writes at random with a transient error: before the write, or
    after it committed (the retry then writes the same records again)."""

    def __init__(self, backend: Any, rng: random.Random) -> None:
        self.backend, self.rng = backend, rng
        self.failing = True
        self.failures = 0

    async def write(self, records: Sequence[Record]) -> WriteResult:
        roll = self.rng.random() if self.failing else 1.0
        if roll < 0.15:
            self.failures += 1
            msg = "injected: connection reset before the write"
            raise TransientBackendError(msg)
        result: WriteResult = await self.backend.write(records)
        if roll < 0.3:
            self.failures += 1
            msg = "injected: connection reset after the commit"
            raise TransientBackendError(msg)
        return result


def _versions(rng: random.Random) -> list[Record]:
    """Versions of shared bar and trade keys (few ``as_of``, revisions and values: ties
    happen), and distinct ticks that must each be stored once."""
    base = datetime(2024, 6, 1, tzinfo=UTC)
    out: list[Record] = []
    for symbol in SYMBOLS:
        for start in STARTS:
            for _ in range(VERSIONS_PER_KEY):
                low = float(rng.choice([1, 2]))
                out.append(
                    Bar(
                        source="race", symbol=symbol, timeframe="1m", start=start,
                        open=low, high=low + 2, low=low, close=low + rng.choice([0, 1]),
                        volume=float(rng.randint(0, 3)),
                        as_of=base + timedelta(seconds=rng.randint(0, 2)),
                        revision=rng.randint(0, 2),
                    )
                )  # fmt: skip
        out.extend(
            Trade(
                symbol=symbol, ts=from_ns(1_704_205_800_000_000_007), trade_id=f"v{i}",
                price=float(rng.randint(1, 3)), size=1.0, ordinal=0,
                as_of=base + timedelta(seconds=rng.randint(0, 2)), revision=rng.randint(0, 1),
            )
            for i in range(3)
            for _ in range(VERSIONS_PER_KEY)
        )  # fmt: skip
        out.extend(
            Trade(
                symbol=symbol, ts=from_ns(1_704_205_800_000_000_000 + i), trade_id=f"t{i}",
                price=1.0 + i, size=1.0, ordinal=0, as_of=base,
            )
            for i in range(TICKS_PER_SYMBOL)
        )  # fmt: skip
    return out


def _chunk(batch: list[Record], rng: random.Random) -> ModelChunk | ArrowChunk:
    """A writer's batch as a model chunk, or as an Arrow chunk when it is of one kind."""
    kinds = {type(record) for record in batch}
    if len(kinds) == 1 and rng.random() < 0.5:
        kind = Kind.BARS if kinds == {Bar} else Kind.TRADES
        return ArrowChunk(kind, conform(from_models(batch, kind), kind))
    return ModelChunk(tuple(batch))


async def _writer(
    coordinator: WriteCoordinator, versions: list[Record], rng: random.Random
) -> None:
    """Submit ``versions`` in random batches; a batch refused by a stopping coordinator is
    submitted again once it runs (what it had accepted is written anyway: idempotent)."""
    while versions:
        size = rng.randint(1, 9)
        batch, versions[:size] = versions[:size], []
        chunk = _chunk(batch, rng)
        while True:
            try:
                await coordinator.submit_many(chunk)
                break
            except CoordinatorStoppedError:
                await asyncio.sleep(0.005)
        await asyncio.sleep(rng.random() / 500)


async def _restarts(coordinator: WriteCoordinator) -> None:
    """Restart the coordinator while the writers write: drained, then aborted (what is
    queued or in flight goes to the dead-letter file)."""
    for drain in (True, False):
        await asyncio.sleep(0.05)
        await coordinator.stop(drain=drain)
        assert coordinator.state is CoordinatorState.STOPPED
        await coordinator.start()


async def _held(backend: Any) -> dict[tuple[Any, ...], Any]:
    """Every bar and trade the store holds, by key (each key once)."""
    held: dict[tuple[Any, ...], Any] = {}
    for symbol in SYMBOLS:
        for read in (
            backend.query_bars(symbol, "1m", *WIDE, limit=10_000),
            backend.query_trades(symbol, *WIDE, limit=10_000),
        ):
            for record in await read:
                assert key_of(record) not in held, record
                held[key_of(record)] = record
    return held


async def test_chunks_of_both_kinds_race_retries_and_restarts_to_the_newest_versions(
    backend: Any, tmp_path: Path
) -> None:
    rng = random.Random(26)
    written = _versions(rng)
    failing = _Failing(backend, random.Random(7))
    dead_letters = FileDeadLetterStore(tmp_path / "dlq.ndjson")
    coordinator = WriteCoordinator(
        failing,
        coordinator_id="race",
        capacity=48,
        workers=3,
        batch_size=7,
        flush_interval=0.002,
        retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005),
        breaker=CircuitBreaker(failure_threshold=10_000, reset_timeout=0.01),
        dead_letters=dead_letters,
        heartbeat_interval=60.0,
    )
    shuffled = rng.sample(written, len(written))
    shares = [shuffled[i::WRITERS] for i in range(WRITERS)]
    await coordinator.start()
    async with asyncio.timeout(120):
        await asyncio.gather(
            *(_writer(coordinator, share, random.Random(i)) for i, share in enumerate(shares)),
            _restarts(coordinator),
        )
        failing.failing = False
        await coordinator.flush()
        replayed = await dead_letters.replay(coordinator.submit_many)
        await coordinator.stop(drain=True)

    stats = coordinator.stats()
    assert failing.failures > 0
    assert stats.retries > 0
    assert replayed.failed == 0
    assert await dead_letters.count() == 0
    assert (stats.dropped, stats.failed, stats.unaccounted) == (0, 0, 0)
    assert stats.written + stats.dead_lettered == stats.accepted
    model = newest(written)
    assert await _held(backend) == model
    ticks = len(SYMBOLS) * (TICKS_PER_SYMBOL + 3)
    assert await backend.count("trades") == ticks
    assert await backend.count("bars") == len(SYMBOLS) * len(STARTS)

"""FileDeadLetterStore: durable NDJSON lines, read back as models, atomic replay."""

import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from market_data_store.backends.base import Record
from market_data_store.dlq import DeadLetterStore, FileDeadLetterStore, ReplayResult
from market_data_store.exceptions import QueueFullError

pytestmark = pytest.mark.asyncio


@pytest.fixture
def store(tmp_path: Path) -> FileDeadLetterStore:
    return FileDeadLetterStore(tmp_path / "dlq" / "failed.ndjson")


async def entries(store: FileDeadLetterStore) -> list[object]:
    return [entry async for entry in store.read()]


async def test_is_a_dead_letter_store(store: FileDeadLetterStore) -> None:
    assert isinstance(store, DeadLetterStore)
    assert await store.count() == 0
    assert await entries(store) == []


async def test_one_fsynced_line_per_batch_in_the_documented_shape(
    store: FileDeadLetterStore, kit: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    records = kit.mixed(4)
    entry = await store.put(records, error="TransientBackendError: timeout", attempts=5)
    await store.put(kit.trades(2), error="PermanentBackendError: bad", attempts=1)

    lines = store.path.read_text().splitlines()
    assert len(lines) == 2
    assert len(synced) >= 2
    document = json.loads(lines[0])
    assert set(document) == {"id", "ts", "error", "attempts", "records"}
    assert document["id"] == entry.id
    assert document["attempts"] == 5
    assert document["error"] == "TransientBackendError: timeout"
    assert [r["type"] for r in document["records"]] == ["Bar", "Trade", "Quote", "Signal"]
    assert document["records"][1]["data"] == records[1].model_dump(mode="json")
    assert await store.count() == 2


async def test_read_gives_back_the_models(store: FileDeadLetterStore, kit: SimpleNamespace) -> None:
    first, second = kit.mixed(8), kit.trades(3, start=100)
    await store.put(first, error="e1", attempts=3)
    await store.put(second, error="e2", attempts=1)
    got = [entry async for entry in store.read()]
    assert [list(entry.records) for entry in got] == [first, second]
    assert [(entry.error, entry.attempts) for entry in got] == [("e1", 3), ("e2", 1)]
    assert all(entry.ts.tzinfo is not None for entry in got)


async def test_replay_removes_accepted_entries_and_keeps_refused_ones(
    store: FileDeadLetterStore, kit: SimpleNamespace
) -> None:
    batches = [kit.trades(2, start=10 * i) for i in range(4)]
    for batch in batches:
        await store.put(batch, error="x", attempts=1)
    accepted: list[Sequence[Record]] = []

    async def submit(records: Sequence[Record]) -> None:
        if records[0] == batches[1][0]:
            msg = "queue full"
            raise QueueFullError(msg)
        accepted.append(records)

    result = await store.replay(submit)
    assert result == ReplayResult(replayed=3, records=6, failed=1, corrupt=0)
    assert [list(r) for r in accepted] == [batches[0], batches[2], batches[3]]
    remaining = [entry async for entry in store.read()]
    assert [list(entry.records) for entry in remaining] == [batches[1]]
    assert not list(store.path.parent.glob("*.tmp"))  # the temporary file was renamed


async def test_entries_added_during_a_replay_are_kept(
    store: FileDeadLetterStore, kit: SimpleNamespace
) -> None:
    await store.put(kit.trades(1), error="old", attempts=1)
    late = kit.trades(1, start=50)

    async def submit(records: Sequence[Record]) -> None:
        await store.put(late, error="new", attempts=1)  # a worker dead-letters meanwhile

    result = await store.replay(submit)
    assert result.replayed == 1
    assert [entry.error async for entry in store.read()] == ["new"]


async def test_unreadable_lines_are_skipped_counted_and_never_removed(
    store: FileDeadLetterStore, kit: SimpleNamespace
) -> None:
    await store.put(kit.trades(1), error="good", attempts=1)
    with store.path.open("a") as handle:
        handle.write('{"id": "cut-short", "records": [\n')
        handle.write('{"id": "x", "ts": "2024-01-02T00:00:00+00:00", "error": "e", "attempts": 1,'
                     ' "records": [{"type": "Candle", "data": {}}]}\n')  # fmt: skip
    assert [entry.error async for entry in store.read()] == ["good"]
    assert store.corrupt_lines == 2

    async def accept(records: Sequence[Record]) -> None:
        return None

    result = await store.replay(accept)
    assert (result.replayed, result.corrupt) == (1, 2)
    assert await store.count() == 2  # the two unreadable lines stay for an operator


async def test_replay_of_an_empty_or_missing_file(store: FileDeadLetterStore) -> None:
    async def accept(records: Sequence[Record]) -> None:
        return None

    assert await store.replay(accept) == ReplayResult()
    assert not store.path.exists()

"""Write receipts and the isolation of records the database refuses: each caller learns what
became of its own records, and a refused record never takes its batch-mates down with it.
The writer is a fake (conftest.py) that refuses "poison" records the way PostgreSQL refuses
a value (``InvalidValueError`` for the whole batch, nothing of it written)."""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_data_core import Trade
from market_data_core.testing import T0, make_trade
from market_data_core.testing.servers import scaled
from market_data_store.backends.base import Record
from market_data_store.coordinator import WriteCoordinator
from market_data_store.dlq import FileDeadLetterStore
from market_data_store.exceptions import InvalidValueError, PermanentBackendError
from market_data_store.receipts import Ledger, Outcome, RefusedRecord, WriteReceipt
from market_data_store.retry import BreakerState, CircuitBreaker

Make = Callable[..., Awaitable[WriteCoordinator]]
POISON = -666.0
REASON = 'invalid byte sequence for encoding "UTF8": 0x00'


def poison_rule(records: Sequence[Record]) -> BaseException | None:
    """Refuse a batch holding a poison trade, as PostgreSQL refuses a whole COPY."""
    if any(isinstance(r, Trade) and r.price == POISON for r in records):
        return InvalidValueError(f"PostgreSQL write failed: {REASON}", reason=REASON)
    return None


MARKER = "XX000: unsupported jsonb version number 123"


def marker_rule(records: Sequence[Record]) -> BaseException | None:
    """Fail a batch holding a poison trade with an error that names no value (as PostgreSQL's
    internal errors do): only bisecting the batch tells the records' fault from the
    database's."""
    if any(isinstance(r, Trade) and r.price == POISON for r in records):
        return PermanentBackendError(f"PostgreSQL write failed: {MARKER}")
    return None


def writer_trades(writer: int, count: int) -> list[Trade]:
    return [
        make_trade(symbol=f"W{writer}", ts=T0 + timedelta(microseconds=i), price=100.0 + i)
        for i in range(count)
    ]


def poisoned(trade: Trade) -> Trade:
    return trade.model_copy(update={"price": POISON})


async def dead_lettered(store: FileDeadLetterStore) -> list[Record]:
    return [record async for entry in store.read() for record in entry.records]


@pytest.mark.asyncio
async def test_a_refused_record_among_20_writers_costs_only_itself(
    make_coordinator: Make, fake_writer: Any, tmp_path: Path
) -> None:
    """20 callers share batches; one sends a poison record. Every other caller's records are
    written and its receipt says so; the poisoned caller learns which record was refused."""
    fake_writer.rule = poison_rule
    dlq = FileDeadLetterStore(tmp_path / "dlq.ndjson")
    coordinator = await make_coordinator(
        capacity=1000, workers=2, batch_size=50, flush_interval=0.05, dead_letters=dlq
    )
    batches = {writer: writer_trades(writer, 10) for writer in range(20)}
    batches[7][3] = poisoned(batches[7][3])
    receipts = await asyncio.gather(*(coordinator.submit_many(b) for b in batches.values()))
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in receipts)), 30)

    for writer, receipt in enumerate(receipts):
        if writer == 7:
            assert (receipt.written, receipt.dead_lettered, receipt.failed) == (9, 1, 0)
            assert receipt.refused == [RefusedRecord(3, REASON)]
            assert not receipt.stored
        else:
            assert receipt.stored, (writer, receipt)
            assert receipt.refused == []
    good = [t for batch in batches.values() for t in batch if t.price != POISON]
    assert Counter(fake_writer.written) == Counter(good)
    assert await dead_lettered(dlq) == [batches[7][3]]
    stats = coordinator.stats()
    assert (stats.refused, stats.dead_lettered, stats.written) == (1, 1, 199)
    assert stats.unaccounted == 0


@pytest.mark.asyncio
async def test_refusals_never_open_the_circuit_breaker(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    fake_writer.rule = poison_rule
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=60)
    coordinator = await make_coordinator(workers=1, batch_size=8, breaker=breaker)
    records = kit.trades(8)
    records[5] = poisoned(records[5])
    receipt = await coordinator.submit_many(records)
    await asyncio.wait_for(receipt.wait(), scaled(30))
    assert breaker.state is BreakerState.CLOSED
    assert receipt.written == 7
    assert receipt.failed == 1  # no dead-letter store: counted as failed, and said so
    assert receipt.refused == [RefusedRecord(5, REASON)]


@pytest.mark.asyncio
async def test_an_error_naming_no_value_costs_only_the_request_whose_rows_cause_it(
    make_coordinator: Make, fake_writer: Any, tmp_path: Path
) -> None:
    """A backend that fails any batch holding one marker row, with a generic permanent error:
    bisecting finds the row (a strict subset fails), so its caller alone is refused; the
    others of its batches are written; the breaker (threshold 1) never opens; nothing that
    was written is dead-lettered."""
    fake_writer.rule = marker_rule
    dlq = FileDeadLetterStore(tmp_path / "dlq.ndjson")
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=60)
    coordinator = await make_coordinator(
        capacity=1000, workers=2, batch_size=50, flush_interval=0.05, dead_letters=dlq,
        breaker=breaker,
    )  # fmt: skip
    poison, good = [], []
    for round_ in range(6):  # more rounds than any breaker threshold
        batches = [writer_trades(writer + 100 * round_, 10) for writer in range(20)]
        batches[7][3] = poisoned(batches[7][3])
        poison.append(batches[7][3])
        good += [t for batch in batches for t in batch if t.price != POISON]
        receipts = await asyncio.gather(*(coordinator.submit_many(b) for b in batches))
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in receipts)), 30)
        assert receipts[7].refused == [RefusedRecord(3, f"PostgreSQL write failed: {MARKER}")]
        assert receipts[7].written == 9
        assert all(r.stored for n, r in enumerate(receipts) if n != 7)
        assert breaker.state is BreakerState.CLOSED
    assert Counter(await dead_lettered(dlq)) == Counter(poison)  # nothing written is there
    assert Counter(fake_writer.written) == Counter(good)
    assert coordinator.stats().unaccounted == 0


@pytest.mark.asyncio
async def test_a_flood_of_bad_rows_costs_a_bounded_number_of_writes(
    make_coordinator: Make, fake_writer: Any
) -> None:
    """One caller sends 2,000 rows the database refuses, beside a good caller: bisecting
    inside one caller's rows stops after a budget, the rest of its rows are refused whole,
    and the good caller is written: the database is not asked thousands of times."""
    fake_writer.rule = marker_rule
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=60)
    coordinator = await make_coordinator(
        capacity=5000, workers=1, batch_size=5000, flush_interval=0.05, breaker=breaker
    )
    fake_writer.hold()
    bad = await coordinator.submit_many([poisoned(t) for t in writer_trades(1, 2000)])
    good = await coordinator.submit_many(writer_trades(2, 10))
    fake_writer.release()
    await asyncio.wait_for(asyncio.gather(bad.wait(), good.wait()), scaled(30))
    assert good.stored
    assert bad.written == 0
    assert [r.index for r in bad.refused] == list(range(2000))
    assert fake_writer.calls <= 2 * 64 + 4
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.asyncio
async def test_a_receipt_tells_what_a_stop_dead_lettered(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace, tmp_path: Path
) -> None:
    dlq = FileDeadLetterStore(tmp_path / "dlq.ndjson")
    coordinator = await make_coordinator(workers=1, batch_size=4, dead_letters=dlq)
    fake_writer.hold()
    receipt = await coordinator.submit_many(kit.trades(10))
    await coordinator.stop(drain=False)
    assert receipt.done
    assert (receipt.written, receipt.dead_lettered) == (0, 10)
    assert not receipt.stored


@pytest.mark.asyncio
async def test_a_receipt_counts_what_drop_oldest_evicted(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    fake_writer.hold()
    coordinator = await make_coordinator(capacity=5, workers=1, overflow="drop_oldest")
    first = await coordinator.submit_many(kit.trades(5))
    second = await coordinator.submit_many(kit.trades(3, start=5))
    fake_writer.release()
    await asyncio.wait_for(second.wait(), scaled(30))
    await asyncio.wait_for(first.wait(), scaled(30))
    assert second.stored
    assert first.dropped + first.written == 5
    assert first.dropped >= 3  # at most one was taken by the worker before the eviction


@pytest.mark.asyncio
async def test_a_blocking_call_queued_in_parts_settles_once_all_parts_are(
    make_coordinator: Make, fake_writer: Any, kit: SimpleNamespace
) -> None:
    coordinator = await make_coordinator(capacity=4, workers=1, batch_size=3)
    records = kit.trades(15)
    records[11] = poisoned(records[11])
    fake_writer.rule = poison_rule
    others = [coordinator.submit_many(kit.trades(2, start=100 + 2 * i)) for i in range(3)]
    receipts = await asyncio.gather(coordinator.submit_many(records), *others)
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in receipts)), 30)
    assert receipts[0].written == 14
    assert receipts[0].refused == [RefusedRecord(11, REASON)]
    assert all(r.stored for r in receipts[1:])


def test_an_empty_call_is_settled_at_once() -> None:
    receipt = WriteReceipt(0)
    assert receipt.done
    assert receipt.stored


def test_the_ledger_maps_ranges_to_the_calls_they_touch() -> None:
    ledger = Ledger()
    a, b = WriteReceipt(5), WriteReceipt(4)
    ledger.add(0, 3, a, 0)  # a's first part, then b, then the rest of a
    ledger.add(3, 4, b, 0)
    ledger.add(7, 2, a, 3)
    assert ledger.boundaries(0, 9) == [3, 7]
    assert ledger.boundaries(3, 7) == []
    ledger.settle(1, 4, Outcome.WRITTEN)  # 2 of a, 2 of b
    assert (a.written, b.written) == (2, 2)
    ledger.refuse(8, "bad", Outcome.DEAD_LETTERED)
    assert a.refused == [RefusedRecord(4, "bad")]
    ledger.settle(0, 1, Outcome.WRITTEN)
    ledger.settle(5, 3, Outcome.WRITTEN)
    assert a.done
    assert b.done
    assert (a.written, a.dead_lettered, b.written) == (4, 1, 4)
    assert len(ledger) == 0


calls = st.lists(
    st.lists(st.booleans(), min_size=1, max_size=12).map(tuple), min_size=1, max_size=12
)
"""Calls to submit_many: each a tuple of flags, True for a poison record."""


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    calls=calls,
    batch_size=st.integers(1, 40),
    workers=st.integers(1, 3),
    rule=st.sampled_from([poison_rule, marker_rule]),
    transient=st.integers(0, 4),
)
def test_exactly_the_refused_records_are_not_written(
    calls: list[tuple[bool, ...]],
    batch_size: int,
    workers: int,
    rule: Callable[[Sequence[Record]], BaseException | None],
    transient: int,
    kit: SimpleNamespace,
    tmp_path_factory: Any,
) -> None:
    """Whatever the batching, racing workers and retried transient errors: every good record
    is written once, every poison record is dead-lettered and never written, and each call's
    receipt names only its own poison records. An error naming no value (``marker_rule``) is
    a refusal when bisecting finds a strict subset failing; a batch of nothing but poison is
    indistinguishable from a failing database (dead-lettered, not blamed on its callers)."""

    async def scenario() -> None:
        writer = kit.FakeWriter()
        writer.rule = rule
        writer.transient = transient
        dlq = FileDeadLetterStore(tmp_path_factory.mktemp("dlq") / "dlq.ndjson")
        coordinator = WriteCoordinator(
            writer, coordinator_id="prop", capacity=64, workers=workers, batch_size=batch_size,
            flush_interval=0.001, retry=kit.fast_retry(), dead_letters=dlq, heartbeat_interval=60,
            breaker=CircuitBreaker(failure_threshold=1, reset_timeout=0.001),
        )  # fmt: skip
        await coordinator.start()
        batches = [
            [
                poisoned(t) if bad else t
                for t, bad in zip(writer_trades(n, len(flags)), flags, strict=True)
            ]
            for n, flags in enumerate(calls)
        ]
        receipts = await asyncio.gather(*(coordinator.submit_many(b) for b in batches))
        # an outage is held while running (a stop would dead-letter what it holds): wait
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in receipts)), 60)
        await asyncio.wait_for(coordinator.stop(drain=True), scaled(60))
        for flags, receipt in zip(calls, receipts, strict=True):
            poison = [i for i, bad in enumerate(flags) if bad]
            refused = [r.index for r in receipt.refused]
            if rule is poison_rule:
                assert refused == poison
            else:
                assert set(refused) <= set(poison)
            assert receipt.written == flags.count(False)
            assert receipt.dead_lettered == flags.count(True)
        good = [t for batch in batches for t in batch if t.price != POISON]
        assert Counter(writer.written) == Counter(good)
        assert sorted(t.symbol for t in await dead_lettered(dlq)) == sorted(
            t.symbol for batch in batches for t in batch if t.price == POISON
        )
        assert coordinator.stats().unaccounted == 0

    asyncio.run(scenario())

"""The append-only audit log of control calls."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from market_data_core import AuditEnvelope, AuditOutcome
from market_data_core.testing import T0, make_audit
from market_data_orchestrator.audit import AuditLog

TOKEN = "op-token-4f9a2c"


def envelopes(count: int) -> list[AuditEnvelope]:
    return [
        make_audit(action="pause", target=f"job-{i}", ts=T0 + timedelta(seconds=i))
        for i in range(count)
    ]


@pytest.mark.asyncio
async def test_round_trip_newest_first(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    written = envelopes(5)
    for envelope in written:
        await log.append(envelope)
    await log.aclose()
    assert await log.read() == written[::-1]
    assert await log.read(limit=2) == [written[4], written[3]]
    assert await log.read(limit=10, since=T0 + timedelta(seconds=3)) == [written[4], written[3]]
    assert await log.read(limit=0) == []
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [AuditEnvelope.model_validate_json(line) for line in lines] == written


@pytest.mark.asyncio
async def test_missing_file_reads_empty(tmp_path: Path) -> None:
    assert await AuditLog(tmp_path / "none.jsonl").read() == []


@pytest.mark.asyncio
async def test_record_builds_the_envelope(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a" / "audit.jsonl")  # parent directories are created
    envelope = await log.record(
        actor="mallory",
        role="viewer",
        action="reload",
        target="bars-1m",
        result=AuditOutcome.DENIED,
        reason="needs admin",
        request_id="req-1",
    )
    assert envelope.ts.tzinfo is not None
    [read] = await log.read()
    assert read == envelope
    assert (read.actor, read.result, read.request_id) == ("mallory", AuditOutcome.DENIED, "req-1")
    await log.aclose()


@pytest.mark.asyncio
async def test_truncated_last_line_is_tolerated_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first, second, third = envelopes(3)
    whole = first.model_dump_json() + "\n"
    partial = second.model_dump_json()[:40]  # a crash in the middle of a write
    path.write_text(whole + partial)

    log = AuditLog(path)
    assert await log.read() == [first]
    assert log.skipped_lines == 1
    await log.append(third)
    await log.aclose()
    assert await AuditLog(path).read() == [third, first]
    assert path.read_text().startswith(whole + partial + "\n")


@pytest.mark.asyncio
async def test_file_only_grows(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    before = b""
    for envelope in envelopes(4):
        await log.append(envelope)
        after = path.read_bytes()
        assert after.startswith(before)  # earlier records untouched
        assert len(after) > len(before)
        before = after
    # a second writer (a restarted orchestrator) appends too
    other = AuditLog(path)
    await other.append(make_audit(actor="second"))
    assert path.read_bytes().startswith(before)
    await log.aclose()
    await other.aclose()


@pytest.mark.asyncio
async def test_concurrent_appends_are_whole_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    await asyncio.gather(*(log.append(e) for e in envelopes(50)))
    await log.aclose()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 50
    assert all(json.loads(line)["action"] == "pause" for line in lines)
    assert len(await log.read(limit=1000)) == 50


@pytest.mark.asyncio
async def test_reads_across_read_blocks(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    written = [
        make_audit(target="t" * 200, ts=T0 + timedelta(seconds=i), reason="r" * 900)
        for i in range(200)
    ]  # about 250 KB: several 64 KiB blocks read from the end
    for envelope in written:
        await log.append(envelope)
    await log.aclose()
    assert await log.read(limit=500) == written[::-1]


@pytest.mark.asyncio
async def test_no_credentials_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    kept = await log.append(
        make_audit(
            actor="bob",
            details={"token": TOKEN, "Authorization": f"Bearer {TOKEN}", "job_state": "paused"},
        )
    )
    await log.aclose()
    text = path.read_text()
    assert TOKEN not in text
    assert "Bearer" not in text
    assert dict(kept.details) == {"job_state": "paused"}
    [read] = await log.read()
    assert read.actor == "bob"
    assert dict(read.details) == {"job_state": "paused"}


@pytest.mark.asyncio
async def test_record_cuts_what_a_caller_sent_to_the_envelope_limits(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    envelope = await log.record(
        actor="",
        role="",
        action="POST /v1/jobs/" + "j" * 200 + "/pause",
        target="t" * 1000,
        result=AuditOutcome.DENIED,
        reason="r" * 5000,
        request_id="q" * 500,
        details={"k" * 100: "v" * 5000, "status": 401},
    )
    assert (envelope.actor, envelope.role) == ("unknown", None)
    assert len(envelope.action) == 64
    assert envelope.action.endswith("…")
    assert envelope.target is not None
    assert len(envelope.target) == 256
    assert envelope.reason is not None
    assert len(envelope.reason) == 1024
    assert envelope.request_id == "q" * 127 + "…"
    assert envelope.details == {"k" * 63 + "…": "v" * 1023 + "…", "status": 401}
    await log.aclose()
    [read] = await log.read()
    assert read == envelope

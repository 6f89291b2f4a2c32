"""The audit log: every control call, allowed or denied, as one JSON line.

Each record is a core ``AuditEnvelope`` serialised on one line. The file is opened in append
mode only and never rewritten; each record is written with one ``write``, then flushed and
``fsync``-ed before ``append`` returns, under an asyncio lock (the file I/O runs in a worker
thread so the event loop is not blocked by ``fsync``).

A crash can leave a truncated last line: ``read`` skips lines that do not parse, and the
next ``append`` first ends such a line with a newline so the new record stays whole.

The envelope holds the actor's *name*; details whose key looks like a credential
(``token``, ``authorization``, ``password``, ``secret``...) are dropped before writing.

``record`` never fails on what a caller sent: text longer than the envelope allows (a
request path as ``target``, an ``X-Request-Id`` header, a reason) is cut to the limit and
ends with ``…``, and empty required text becomes ``"unknown"``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog
from pydantic import ValidationError

from market_data_core import AuditEnvelope, AuditOutcome

__all__ = ["AuditLog"]

logger = structlog.get_logger(__name__)

_CREDENTIAL_KEY = re.compile(r"token|authori[sz]ation|password|passwd|secret|api[_-]?key", re.I)
_BLOCK = 64 * 1024
_CUT = "…"
# the limits of core's AuditEnvelope fields
_ACTOR, _ROLE, _ACTION, _TARGET, _REASON, _REQUEST_ID, _KEY = 128, 32, 64, 256, 1024, 128, 64


class AuditLog:
    """Append-only JSON lines of ``AuditEnvelope`` at ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()
        self._file: IO[bytes] | None = None
        self.written = 0
        self.skipped_lines = 0

    async def append(self, envelope: AuditEnvelope) -> AuditEnvelope:
        """Write ``envelope`` (credential-like details removed) durably; return what was
        written."""
        clean = _without_credentials(envelope)
        line = clean.model_dump_json().encode() + b"\n"
        async with self._lock:
            await asyncio.to_thread(self._write, line)
            self.written += 1
        return clean

    async def record(
        self,
        *,
        actor: str,
        action: str,
        result: AuditOutcome,
        role: str | None = None,
        target: str | None = None,
        reason: str | None = None,
        **fields: Any,
    ) -> AuditEnvelope:
        """Build an envelope stamped now (text cut to the envelope's limits) and
        ``append`` it."""
        details = fields.pop("details", None) or {}
        request_id = fields.pop("request_id", None)
        envelope = AuditEnvelope(
            actor=_clip(actor, _ACTOR) or "unknown",
            role=_clip(role, _ROLE) or None,
            action=_clip(action, _ACTION) or "unknown",
            target=_clip(target, _TARGET),
            result=result,
            reason=_clip(reason, _REASON),
            request_id=_clip(request_id, _REQUEST_ID),
            details=_bounded(details),
            ts=datetime.now(UTC),
            **fields,
        )
        return await self.append(envelope)

    def _write(self, line: bytes) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            if self._file.tell() > 0 and not _ends_with_newline(self.path):
                line = b"\n" + line  # close a line a crash left truncated
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    async def read(self, limit: int = 100, since: datetime | None = None) -> list[AuditEnvelope]:
        """The newest ``limit`` records (with ``ts >= since`` when given), newest first."""
        if limit <= 0:
            return []
        return await asyncio.to_thread(self._read, limit, since)

    def _read(self, limit: int, since: datetime | None) -> list[AuditEnvelope]:
        records: list[AuditEnvelope] = []
        if not self.path.exists():
            return records
        for raw in _lines_backwards(self.path):
            if not raw.strip():
                continue
            try:
                envelope = AuditEnvelope.model_validate_json(raw)
            except ValidationError:
                self.skipped_lines += 1
                logger.warning("skipping an unreadable audit line", path=str(self.path))
                continue
            if since is not None and envelope.ts < since:
                continue
            records.append(envelope)
            if len(records) >= limit:
                break
        return records

    async def aclose(self) -> None:
        async with self._lock:
            file, self._file = self._file, None
            if file is not None:
                await asyncio.to_thread(file.close)


def _clip(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` characters, the last one ``…`` when something was cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + _CUT


def _bounded(details: dict[str, Any]) -> dict[str, Any]:
    return {
        _clip(str(key), _KEY) or "_": _clip(value, _REASON) if isinstance(value, str) else value
        for key, value in details.items()
    }


def _without_credentials(envelope: AuditEnvelope) -> AuditEnvelope:
    kept = {k: v for k, v in envelope.details.items() if not _CREDENTIAL_KEY.search(k)}
    if len(kept) == len(envelope.details):
        return envelope
    return envelope.model_copy(update={"details": kept})


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The file's lines from last to first, reading blocks from the end."""
    with path.open("rb") as file:
        position = file.seek(0, os.SEEK_END)
        tail = b""
        while position > 0:
            size = min(_BLOCK, position)
            position -= size
            file.seek(position)
            chunk = file.read(size) + tail
            lines = chunk.split(b"\n")
            tail = lines.pop(0)
            yield from reversed(lines)
        yield tail

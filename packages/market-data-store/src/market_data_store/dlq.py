"""The dead-letter store: batches the write coordinator could not write, kept for replay.

``FileDeadLetterStore`` appends one JSON line per failed batch (NDJSON) and fsyncs it::

    {"id": "9f1c...", "ts": "2024-01-02T14:30:00Z", "error": "TransientBackendError: ...",
     "attempts": 5, "records": [{"type": "Bar", "data": {...}}, ...]}

``read()`` yields the entries back as core models; ``replay(submit)`` re-submits each entry
and removes those that were accepted, rewriting the file atomically (temporary file, fsync,
``os.replace``). Entries appended while a replay runs are kept. A line that cannot be parsed
(say, a write cut short by a crash) is skipped by ``read`` with a warning, counted in
``corrupt_lines``, and never removed by a replay: nothing is thrown away behind the
operator's back. File I/O runs in a thread (``asyncio.to_thread``).

The store's writes are idempotent upserts, so replaying a batch that was in fact written
(a write cancelled after it committed) changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import structlog
from pydantic import ValidationError

from market_data_core import Bar, Quote, Signal, Trade
from market_data_store.backends.base import Record

__all__ = [
    "DeadLetter",
    "DeadLetterStore",
    "FileDeadLetterStore",
    "ReplayResult",
    "Submit",
]

logger = structlog.get_logger(__name__)

Submit = Callable[[Sequence[Record]], Awaitable[object]]
"""Re-submits a batch; returning means accepted, raising means keep the entry."""

_MODELS: dict[str, type[Bar] | type[Trade] | type[Quote] | type[Signal]] = {
    "Bar": Bar,
    "Trade": Trade,
    "Quote": Quote,
    "Signal": Signal,
}
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One failed batch: why it failed, after how many write attempts, and its records."""

    id: str
    ts: datetime
    error: str
    attempts: int
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What one ``replay`` did: entries (and their records) accepted and removed, entries
    kept because ``submit`` raised, and unparsable lines left in place."""

    replayed: int = 0
    records: int = 0
    failed: int = 0
    corrupt: int = 0


@runtime_checkable
class DeadLetterStore(Protocol):
    """Where failed batches go. ``put`` must be durable when it returns."""

    async def put(self, records: Sequence[Record], *, error: str, attempts: int) -> DeadLetter:
        """Keep a failed batch; returns the stored entry."""
        ...

    def read(self) -> AsyncIterator[DeadLetter]:
        """The stored entries, oldest first."""
        ...

    async def replay(self, submit: Submit) -> ReplayResult:
        """Re-submit every entry; remove those ``submit`` accepted (returned without raising)."""
        ...

    async def count(self) -> int:
        """How many entries (failed batches) are stored."""
        ...


class FileDeadLetterStore:
    """A ``DeadLetterStore`` in one append-only NDJSON file; see the module docstring.

    Safe for concurrent use from one event loop (and from threads): appends and rewrites
    are serialised by a lock. Its parent directory is created on the first write.
    """

    def __init__(self, path: str | os.PathLike[str], *, now: Callable[[], datetime] | None = None):
        self.path = Path(path)
        self._now = now or _utcnow
        self._lock = threading.Lock()
        self._replaying = asyncio.Lock()
        self.corrupt_lines = 0
        """Unparsable lines met by the last ``read`` or ``replay``."""
        self.last_error: str | None = None
        """Why the last ``check`` or ``put`` failed (``None`` once one succeeds)."""

    async def check(self) -> str | None:
        """Can entries be appended? Tries (creating the directory if needed) and returns
        ``None``, or says why not; ``last_error`` keeps the answer."""
        try:
            await asyncio.to_thread(self._touch)
        except OSError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
        else:
            self.last_error = None
        return self.last_error

    def _touch(self) -> None:
        """Open the file for appending when it exists; else create (and remove) a file
        beside it: an empty dead-letter store leaves no file behind."""
        with self._lock:
            if self.path.exists():
                with self.path.open("a", encoding="utf-8"):
                    return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}."):
                pass

    async def put(self, records: Sequence[Record], *, error: str, attempts: int) -> DeadLetter:
        """Append the batch as one line and fsync it."""
        entry = DeadLetter(
            id=uuid.uuid4().hex,
            ts=self._now(),
            error=error[:_MAX_ERROR_CHARS],
            attempts=attempts,
            records=tuple(records),
        )
        line = encode(entry)
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        self.last_error = None
        return entry

    async def read(self) -> AsyncIterator[DeadLetter]:
        """Yield the stored entries, oldest first (unparsable lines skipped and counted)."""
        lines = await asyncio.to_thread(self._lines)
        self.corrupt_lines = 0
        for number, line in enumerate(lines, start=1):
            entry = self._decode_or_warn(line, number)
            if entry is not None:
                yield entry

    async def replay(self, submit: Submit) -> ReplayResult:
        """Submit each entry's records in order; remove the accepted entries atomically.

        An entry whose ``submit`` raises is kept (and logged). Accepted entries are removed
        even when the replay is cancelled part way. Replays do not overlap.
        """
        async with self._replaying:
            lines = await asyncio.to_thread(self._lines)
            self.corrupt_lines = 0
            done: set[str] = set()
            records = failed = 0
            try:
                for number, line in enumerate(lines, start=1):
                    entry = self._decode_or_warn(line, number)
                    if entry is None:
                        continue
                    if await _submitted(submit, entry):
                        done.add(entry.id)
                        records += len(entry.records)
                    else:
                        failed += 1
            finally:
                if done:
                    await asyncio.shield(asyncio.to_thread(self._remove, done))
            return ReplayResult(len(done), records, failed, self.corrupt_lines)

    async def count(self) -> int:
        """Entries stored (unparsable lines included: they are stored too)."""
        return len(await asyncio.to_thread(self._lines))

    def _decode_or_warn(self, line: str, number: int) -> DeadLetter | None:
        try:
            return decode(line)
        except (ValueError, KeyError, TypeError) as exc:
            self.corrupt_lines += 1
            logger.warning(
                "dead-letter line is unreadable", path=str(self.path), line=number, error=str(exc)
            )
            return None

    def _append(self, line: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def _lines(self) -> list[str]:
        with self._lock:
            return self._lines_unlocked()

    def _remove(self, ids: set[str]) -> None:
        """Rewrite the file without the entries in ``ids`` (temp file + ``os.replace``)."""
        with self._lock:
            kept = [line for line in self._lines_unlocked() if _entry_id(line) not in ids]
            descriptor, temp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
            try:
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.writelines(line + "\n" for line in kept)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, self.path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            _fsync_directory(self.path.parent)

    def _lines_unlocked(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"FileDeadLetterStore({str(self.path)!r})"


def encode(entry: DeadLetter) -> str:
    """One NDJSON line for ``entry``."""
    document = {
        "id": entry.id,
        "ts": entry.ts.isoformat(),
        "error": entry.error,
        "attempts": entry.attempts,
        "records": [
            {"type": type(record).__name__, "data": record.model_dump(mode="json")}
            for record in entry.records
        ],
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def decode(line: str) -> DeadLetter:
    """The entry in one NDJSON line; ``ValueError`` (or ``KeyError``) when malformed."""
    document: dict[str, Any] = json.loads(line)
    ts = datetime.fromisoformat(document["ts"])
    if ts.tzinfo is None:
        msg = f"timestamp {document['ts']!r} has no timezone"
        raise ValueError(msg)
    return DeadLetter(
        id=str(document["id"]),
        ts=ts.astimezone(UTC),
        error=str(document["error"]),
        attempts=int(document["attempts"]),
        records=tuple(_decode_record(item) for item in document["records"]),
    )


def _decode_record(item: dict[str, Any]) -> Record:
    kind = item["type"]
    model = _MODELS.get(kind)
    if model is None:
        msg = f"unknown record type {kind!r} (expected one of {', '.join(_MODELS)})"
        raise ValueError(msg)
    try:
        return model.model_validate(item["data"])
    except ValidationError as exc:
        msg = f"invalid {kind}: {exc.errors(include_url=False)}"
        raise ValueError(msg) from exc


def _entry_id(line: str) -> str | None:
    try:
        document = json.loads(line)
    except ValueError:
        return None
    return str(document.get("id")) if isinstance(document, dict) else None


async def _submitted(submit: Submit, entry: DeadLetter) -> bool:
    try:
        await submit(entry.records)
    except Exception:
        logger.warning("dead-letter entry not accepted; it stays", entry=entry.id, exc_info=True)
        return False
    return True


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _utcnow() -> datetime:
    return datetime.now(UTC)

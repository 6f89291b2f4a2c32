"""``Idempotency-Key``: a retried request with the same key and body gets the first answer
back and is not applied twice; the same key with another body is refused (422)."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from market_data_store.exceptions import KeyReusedError

__all__ = ["IdempotencyCache", "KeyReusedError"]


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: str
    status: int
    body: Any
    stored_at: float


class IdempotencyCache:
    """Bounded, expiring memory of answers by key (per process)."""

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        ttl: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max, self._ttl, self._clock = max_entries, ttl, clock

    @staticmethod
    def digest(route: str, body: bytes) -> str:
        return hashlib.sha256(route.encode() + b"\\0" + body).hexdigest()

    def get(self, key: str, digest: str) -> tuple[int, Any] | None:
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry.stored_at > self._ttl:
            self._entries.pop(key, None)
            return None
        if entry.digest != digest:
            msg = "Idempotency-Key was already used with a different request body"
            raise KeyReusedError(msg)
        return entry.status, entry.body

    def put(self, key: str, digest: str, status: int, body: Any) -> None:
        self._entries[key] = _Entry(digest, status, body, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

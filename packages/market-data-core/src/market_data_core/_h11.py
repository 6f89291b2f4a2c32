"""uvicorn's h11 protocol with request deadlines and the right 4xx: see
``market_data_core.serving.guarded_h11`` (the services only: needs uvicorn)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol"]

_LINGER = 1.0
"""Seconds a refused connection is still read (and dropped) before it is closed."""
_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}
_H11_LIMIT = 16 * 1024
"""h11's own limit of an incomplete request head (uvicorn's default)."""
_INCOMPLETE = (h11.IDLE, h11.SEND_BODY)
"""Their states while a request is still arriving."""
_ARRIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


class GuardedH11Protocol(H11Protocol):
    head_timeout = 10.0
    body_timeout = 60.0
    _timer: asyncio.TimerHandle | None = None
    _closing_gently = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm(self.head_timeout)

    def data_received(self, data: bytes) -> None:
        if self._closing_gently:
            return  # read and dropped: see _refuse
        if self._timer is None and self.conn.their_state is h11.IDLE:
            self._arm(self.head_timeout)  # a new request begins
        before = self.conn.their_state
        super().data_received(data)
        after = self.conn.their_state
        if after is h11.SEND_BODY and before is not h11.SEND_BODY:
            self._arm(self.body_timeout)
        elif after in _ARRIVED:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        head, _ = self.conn.trailing_data
        limit = self.config.h11_max_incomplete_event_size or _H11_LIMIT
        if len(head) <= limit:
            self._refuse(400, msg)
        elif b"\n" not in head:
            self._refuse(414, "the request line is too long")
        else:
            self._refuse(431, "the request headers are too large")

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._closing_gently:
            return
        if self.conn.their_state not in _INCOMPLETE:
            return  # the request arrived meanwhile
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self.transport.close()  # nothing of a request came: just close
        elif self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._refuse(408, "the request did not arrive in time")
        else:
            self.transport.close()  # the app is answering already: cut it

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` (a problem document), stop reading requests, drop what comes
        for a moment, then close."""
        self._disarm()
        body = json.dumps({"type": "about:blank", "status": status, "detail": detail}).encode()
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n"
            % (status, _REASONS.get(status, b"Error"), len(body))
        )
        self.transport.write(head + body)
        self._closing_gently = True
        if not getattr(self.cycle, "response_complete", True):  # None between requests
            self.cycle.disconnected = True  # the app's answer, if any, goes nowhere
            self.cycle.message_event.set()
        self.loop.call_later(_LINGER, self.transport.close)

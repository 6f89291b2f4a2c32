"""A reconnecting reader of a store service's feedback stream (needs httpx).

The store serves ``GET {base}/v1/feedback/stream`` as server-sent events: one
``event: feedback`` frame per ``FeedbackEvent`` (its JSON on a ``data:`` line), the latest
event first, and ``: keep-alive`` comments while idle. :class:`SseFeedbackReader` yields
those events for as long as it is iterated: when the service goes away (refused
connection, a non-200 answer, a dropped or silent stream) it waits with capped exponential
backoff and connects again. Nothing here raises for a service that is down; the failure is
logged once per outage and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import ValidationError

from market_data_core import FeedbackEvent
from market_data_core.exceptions import ConfigurationError

__all__ = ["SseFeedbackReader", "SseFrame", "feedback_stream_url", "parse_frames", "redact_url"]

logger = structlog.get_logger("market_data_pipeline.backpressure")

STREAM_PATH = "/v1/feedback/stream"


def feedback_stream_url(base: str) -> str:
    """The stream's URL for a service's base URL (or the stream URL itself)."""
    parts = urlsplit(base)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        msg = f"store feedback URL must be http(s)://host[:port][/prefix], got {redact_url(base)}"
        raise ConfigurationError(msg)
    path = parts.path.rstrip("/")
    if not path.endswith(STREAM_PATH):
        path += STREAM_PATH
    return parts._replace(path=path, fragment="").geturl()


def redact_url(url: str) -> str:
    """``scheme://host:port/path``: no user, password or query string (they may be secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else "<url>"


@dataclass(slots=True)
class SseFrame:
    """One dispatched server-sent event."""

    event: str = "message"
    data: list[str] = field(default_factory=list)


async def parse_frames(lines: AsyncIterator[str]) -> AsyncIterator[SseFrame]:
    """Server-sent events from text lines (the subset of the spec the store uses:
    ``event:``, ``data:``, ``id:`` and ``:`` comments; a blank line ends a frame)."""
    frame = SseFrame()
    async for line in lines:
        if not line:
            if frame.data:
                yield frame
            frame = SseFrame()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            frame.data.append(value)
        elif name == "event":
            frame.event = value


class SseFeedbackReader:
    """Yields the ``FeedbackEvent``s of a store service's stream, reconnecting for ever."""

    def __init__(
        self,
        url: str,
        *,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < min_backoff <= max_backoff:
            msg = f"need 0 < min_backoff <= max_backoff, got {min_backoff} and {max_backoff}"
            raise ConfigurationError(msg)
        self.url = feedback_stream_url(url)
        self.target = redact_url(self.url)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        self._sleep = sleep
        self.connected = False
        self.connections = 0
        self.failures = 0
        self.decode_errors = 0
        self.last_error: str | None = None

    async def events(self) -> AsyncIterator[FeedbackEvent]:
        """Every event of the stream, across reconnections, until the caller stops."""
        backoff = self.min_backoff
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            while True:
                try:
                    async for event in self._connection(client):
                        backoff = self.min_backoff
                        yield event
                    reason = "stream ended"
                except httpx.HTTPStatusError as exc:
                    reason = f"HTTP {exc.response.status_code}"
                except Exception as exc:  # any failure: hold the rate, reconnect
                    reason = type(exc).__name__
                self._failed(reason)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def _connection(self, client: httpx.AsyncClient) -> AsyncIterator[FeedbackEvent]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        async with client.stream("GET", self.url, headers=headers) as response:
            response.raise_for_status()
            self.connections += 1
            if not self.connected:
                logger.info("feedback stream connected", url=self.target)
            self.connected, self.last_error = True, None
            async for frame in parse_frames(response.aiter_lines()):
                event = self._decode(frame)
                if event is not None:
                    yield event

    def _decode(self, frame: SseFrame) -> FeedbackEvent | None:
        if frame.event not in {"feedback", "message"}:
            return None
        try:
            return FeedbackEvent.model_validate_json("\n".join(frame.data))
        except ValidationError as exc:
            self.decode_errors += 1
            logger.warning(
                "skipping an undecodable feedback frame",
                url=self.target,
                errors=exc.error_count(),
            )
            return None

    def _failed(self, reason: str) -> None:
        self.failures += 1
        if self.connected or self.last_error is None:
            logger.warning(
                "feedback stream unavailable; holding the rate and reconnecting",
                url=self.target,
                error=reason,
            )
        self.connected, self.last_error = False, reason

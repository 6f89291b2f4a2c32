"""``mds serve``: uvicorn running the store service, with a stop that fits its time.

On SIGTERM (or SIGINT) uvicorn stops taking connections and waits for the requests in
progress; here the store's write queue starts draining at the same moment, so a request
waiting for its records to be durable is answered (202 once written; 503 once its records
were dead-lettered when the drain ran out of ``drain_timeout``, during a database outage)
instead of holding the stop forever. uvicorn gives requests ``drain_timeout`` plus a grace
period, then the process exits with everything accepted written or dead-lettered.

A request's line and headers must arrive within ``request_head_timeout`` seconds, its body
within ``request_body_timeout`` (else 408); a request line or headers too large answer 414
or 431 (``market_data_core.serving.guarded_h11``).

Access logs go through structlog (``service.app``), with secrets in query strings
redacted; uvicorn's own access log is off.
"""

from __future__ import annotations

import asyncio
import socket
from types import FrameType

import structlog
import uvicorn

from market_data_core.serving import forwarded, guarded_h11
from market_data_store.settings import StoreSettings

__all__ = ["serve"]

logger = structlog.get_logger(__name__)
_GRACE = 5.0
"""Seconds requests get beyond the drain to be answered."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: asyncio.Event) -> None:
        super().__init__(config)
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:  # a signal handler: hand over to the loop
            self._loop.call_soon_threadsafe(self._drain.set)


def serve(settings: StoreSettings, sock: socket.socket | None = None) -> None:
    """Run the service until SIGTERM/SIGINT; see the module docstring. ``sock``: the
    listening socket taken already (``market_data_core.serving.bind``)."""
    from market_data_store.service.app import create_app  # noqa: PLC0415

    drain = asyncio.Event()
    app = create_app(settings, stop_on=drain)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout + _GRACE),
        log_config=None,  # uvicorn's records go through the service's structlog setup
        http=guarded_h11(
            head_timeout=settings.request_head_timeout, body_timeout=settings.request_body_timeout
        ),
        **forwarded(settings.trusted_proxies),
    )
    _Server(config, drain).run(sockets=None if sock is None else [sock])

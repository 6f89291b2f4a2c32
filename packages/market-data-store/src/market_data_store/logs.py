"""structlog configuration of the store's processes (``mds``): see ``market_data_core.logs``
(JSON lines in production, console on a TTY, the standard library's loggers included)."""

from __future__ import annotations

import logging

from market_data_core import logs

__all__ = ["configure_logging"]


def configure_logging(*, json: bool | None = None, level: int = logging.INFO) -> None:
    """Configure logging once for the process (the CLI and the service call it)."""
    logs.configure_logging(json=json, level=level)
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))  # a line per DDL step

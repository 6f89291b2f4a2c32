"""structlog for the pipeline (``mdp``): see ``market_data_core.logs`` (JSON lines when not on
a TTY, console otherwise; the standard library's loggers included)."""

from __future__ import annotations

from market_data_core import logs

__all__ = ["configure_logging"]


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Configure logging once for the process (``mdp`` calls it); logs go to stderr."""
    logs.configure_logging(json=json, level=level)

"""Logging of every service of the platform: structlog, JSON lines in production.

``configure_logging`` sets up structlog *and* the standard library's logging, so that what
libraries log (uvicorn's startup and errors, asyncpg, the write coordinator's stdlib
loggers) comes out in the same format as the services' own events: one JSON object per
line on stderr when it is not a terminal (production, containers, CI), colourful console
lines on a terminal. ``redacted_query`` makes a query string fit for an access log.

Needs structlog (the ``logs`` extra; every service package depends on it). Not imported by
``import market_data_core``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Collection
from typing import TextIO
from urllib.parse import parse_qsl, quote_plus, urlencode

import structlog

__all__ = ["CHATTY_LIBRARIES", "LEVELS", "configure_logging", "redacted_query"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_SECRET_PARAM = re.compile(r"token|secret|passw|pwd|key|auth|signature|credential", re.I)


class _Stderr(logging.StreamHandler[TextIO]):
    """A handler on whatever ``sys.stderr`` is when a record is emitted (tests swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def configure_logging(*, json: bool | None = None, level: str | int = "info") -> None:
    """Configure structlog and the root logger once for the process; JSON lines on stderr
    when ``json`` (default: when stderr is not a terminal). ``level`` is a name of
    ``LEVELS`` or a ``logging`` level; what is below it is dropped."""
    as_json = not sys.stderr.isatty() if json is None else json
    threshold = LEVELS.get(level, logging.INFO) if isinstance(level, str) else level
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = _Stderr()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),  # stdlib `extra=` fields as key-values
                _drop_color_message,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        library = logging.getLogger(name)  # uvicorn's own handlers, if it installed any
        library.handlers.clear()
        library.propagate = True
    for name in CHATTY_LIBRARIES:  # their INFO is a line per request or migration step
        logging.getLogger(name).setLevel(
            threshold if threshold <= logging.DEBUG else logging.WARNING
        )


def _drop_color_message(
    _: object, __: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """uvicorn passes its message again with ANSI colours as ``extra``: not for a log line."""
    event.pop("color_message", None)
    return event


CHATTY_LIBRARIES = ("httpx", "httpcore", "alembic")
"""Libraries whose INFO lines are chatter to a user (httpx: one per request; Alembic: one
per plugin and migration step): shown from WARNING, or everything at ``level="debug"``."""


def redacted_query(query: str, known: Collection[str] = ()) -> str:
    """A query string fit for a log: only the values of the ``known`` parameters (the
    route's own, e.g. ``limit``, ``symbol``) are kept. Any other parameter becomes ``***``,
    name and value (a token passed as ``?t=...`` or as a bare ``?<token>`` never reaches the
    log), and a known one whose name looks secret (``token``, ``api_key``, ``password``...)
    keeps its name only: ``token=***``."""
    if not query:
        return ""
    shown: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in known:
            shown.append("***")
        elif _SECRET_PARAM.search(name):
            shown.append(f"{quote_plus(name)}=***")
        else:
            shown.append(urlencode([(name, value)]))
    return "&".join(shown)

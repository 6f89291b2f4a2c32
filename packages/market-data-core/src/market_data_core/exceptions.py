"""Errors raised by market-data-core.

Every error the platform raises derives from one root, so callers can catch
``MarketDataError`` and know it came from us. Misuse by the caller is kept apart
from failures at run time::

    MarketDataError
    ├── ConfigurationError        the caller passed something unusable (bad timeframe, bad option)
    │   └── TimeframeError        a timeframe string or value that cannot be parsed or aligned
    │   └── PortInUseError        a service's address is taken
    ├── ContractError             a message on the wire does not match a known contract
    ├── ColumnError               an Arrow table breaks the columnar contract (row, column)
    ├── DuplicateKeyError         a JSON object with a key twice (where: ``loc``)
    ├── TransportError            a feedback transport could not deliver or receive
    ├── ContractViolationError    (tests) a document off its committed schema
    └── MissingBinaryError        (tests) a server binary a test needs is not installed

Validation of model fields raises ``pydantic.ValidationError``: its messages name the
field (``loc``) and the offending input, which is what a user needs to fix it.
The other packages subclass ``MarketDataError`` for their own trees.
"""

from __future__ import annotations

import json

__all__ = [
    "ColumnError",
    "ConfigurationError",
    "ContractError",
    "ContractViolationError",
    "DuplicateKeyError",
    "MarketDataError",
    "MissingBinaryError",
    "PortInUseError",
    "TimeframeError",
    "TransportError",
]


class MarketDataError(Exception):
    """Root of every error raised by the market-data packages."""


class ConfigurationError(MarketDataError, ValueError):
    """The caller passed an argument or setting that cannot work."""


class TimeframeError(ConfigurationError):
    """A timeframe could not be parsed, or does not align to a UTC day."""


class ContractError(MarketDataError, ValueError):
    """A wire message could not be decoded into a known contract."""


class TransportError(MarketDataError):
    """A transport failed to deliver or receive a message."""


class PortInUseError(ConfigurationError):
    """The address a service is told to listen on is taken (or not this machine's)."""


class ColumnError(MarketDataError, ValueError):
    """A table that breaks the contract: names the row (0-based) and the column."""

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None) -> None:
        where = ", ".join(
            part
            for part in (
                f"row {row}" if row is not None else "",
                f"column {column!r}" if column is not None else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.column = column
        self.row = row
        self.reason = message


class DuplicateKeyError(MarketDataError, json.JSONDecodeError):
    """A JSON object with a key twice: ``loc`` is where (indexes and keys), ending with the
    key."""

    def __init__(self, loc: tuple[int | str, ...], key: str, document: str) -> None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc) or "top"
        super().__init__(f"duplicate key {key!r} in the object at {where}", document, 0)
        self.loc = (*loc, key)


class ContractViolationError(MarketDataError, AssertionError):
    """A document does not conform to a contract's committed schema (an ``AssertionError``,
    so pytest shows it as a failed check)."""


class MissingBinaryError(MarketDataError, FileNotFoundError):
    """A server binary a test needs is not installed."""

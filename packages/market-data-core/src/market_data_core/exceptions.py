"""Errors raised by market-data-core.

Every error the platform raises derives from one root, so callers can catch
``MarketDataError`` and know it came from us. Misuse by the caller is kept apart
from failures at run time::

    MarketDataError
    ├── ConfigurationError        the caller passed something unusable (bad timeframe, bad option)
    │   └── TimeframeError        a timeframe string or value that cannot be parsed or aligned
    ├── ContractError             a message on the wire does not match a known contract
    └── TransportError            a feedback transport could not deliver or receive

Validation of model fields raises ``pydantic.ValidationError``: its messages name the
field (``loc``) and the offending input, which is what a user needs to fix it.
The other packages subclass ``MarketDataError`` for their own trees.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ContractError",
    "MarketDataError",
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

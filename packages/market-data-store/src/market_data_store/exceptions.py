"""Errors raised by market-data-store.

All derive from core's ``MarketDataError``::

    MarketDataError (market_data_core)
    └── StoreError
        ├── StoreConfigurationError   bad settings or arguments (also a core ConfigurationError)
        ├── BackendError              the database failed a call
        │   ├── TransientBackendError     worth retrying: connection lost, timeout, deadlock,
        │   │                             serialization failure, database starting up
        │   └── PermanentBackendError     retrying cannot help: constraint, bad data, schema
        ├── QueueFullError            overflow strategy ``error`` and the write queue is full
        ├── CoordinatorStoppedError   a write was submitted to a coordinator that is not running
        └── CircuitOpenError          the circuit breaker is open: the backend is failing
"""

from __future__ import annotations

from market_data_core import ConfigurationError, MarketDataError

__all__ = [
    "BackendError",
    "CircuitOpenError",
    "CoordinatorStoppedError",
    "PermanentBackendError",
    "QueueFullError",
    "StoreConfigurationError",
    "StoreError",
    "TransientBackendError",
]


class StoreError(MarketDataError):
    """Root of the store's errors."""


class StoreConfigurationError(StoreError, ConfigurationError):
    """Settings or arguments that cannot work."""


class BackendError(StoreError):
    """The database failed a call."""


class TransientBackendError(BackendError):
    """A failure that may pass: retry with backoff."""


class PermanentBackendError(BackendError):
    """A failure that retrying cannot fix: the batch goes to the dead-letter store."""


class QueueFullError(StoreError):
    """The write queue is full and the overflow strategy is ``error``."""


class CoordinatorStoppedError(StoreError):
    """The write coordinator is not accepting writes (not started, or stopping)."""


class CircuitOpenError(StoreError):
    """The circuit breaker is open after consecutive failed batches."""

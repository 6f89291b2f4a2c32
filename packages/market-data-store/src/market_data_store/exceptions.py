"""Errors raised by market-data-store.

All derive from core's ``MarketDataError``::

    MarketDataError (market_data_core)
    └── StoreError
        ├── StoreConfigurationError   bad settings or arguments (also a core ConfigurationError)
        │   └── BackfillUnavailableError  ``mdp`` is not installed where the store runs
        ├── BackendError              the database failed a call
        │   ├── TransientBackendError     worth retrying: connection lost, timeout, deadlock,
        │   │                             serialization failure, database starting up
        │   └── PermanentBackendError     retrying cannot help: constraint, bad data, schema
        │       └── InvalidValueError         the database cannot store a value it was given
        │                                     (text with a NUL character, a number or time
        │                                     out of range): the caller's input was bad
        ├── HistoryUnavailableError   a read "as known at" a time older than the history kept
        ├── QueueFullError            overflow strategy ``error`` and the write queue is full
        ├── CoordinatorStoppedError   a write was submitted to a coordinator that is not running
        ├── CircuitOpenError          the circuit breaker is open: the backend is failing
        ├── StoreClientError          the service refused a request or stayed unavailable
        ├── BadRecordError            a row of an input file is not a valid record
        └── KeyReusedError            an idempotency key reused with a different body
"""

from __future__ import annotations

from typing import Any

from market_data_core import ConfigurationError, MarketDataError

__all__ = [
    "BackendError",
    "BackfillUnavailableError",
    "BadRecordError",
    "CircuitOpenError",
    "CoordinatorStoppedError",
    "HistoryUnavailableError",
    "InvalidValueError",
    "KeyReusedError",
    "PermanentBackendError",
    "QueueFullError",
    "ReadError",
    "StoreClientError",
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


class InvalidValueError(PermanentBackendError):
    """The database refused a value: PostgreSQL SQLSTATE class 21 (cardinality: two rows of
    one batch for one key), 22 ("data exception": text
    with a NUL character, a number out of range) or 23 (an integrity constraint), SQLite's
    integrity and data errors. The record's fault: the write coordinator isolates it from its
    batch-mates. ``reason`` is the database's own words, without the URL;
    the service answers 422 with it."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class HistoryUnavailableError(StoreError, ValueError):
    """A read as known at a time older than the history the store keeps
    (``history_retention_days``): versions replaced before then may be gone."""


class QueueFullError(StoreError):
    """The write queue is full and the overflow strategy is ``error``."""


class CoordinatorStoppedError(StoreError):
    """The write coordinator is not accepting writes (not started, or stopping)."""


class CircuitOpenError(StoreError):
    """The circuit breaker is open after consecutive failed batches."""


class BackfillUnavailableError(StoreConfigurationError):
    """The ``mdp`` command (market-data-pipeline) is not installed where the store runs."""


class StoreClientError(StoreError):
    """The service refused a request (4xx) or stayed unavailable through the retries."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status, self.body = status, body


class BadRecordError(StoreError, ValueError):
    """A row of an input file is not a valid record."""


class KeyReusedError(StoreError, ValueError):
    """An idempotency key was first used with a different request body."""


class ReadError(StoreError, ValueError):
    """A read the store cannot answer: a bad kind, symbol, range or timeframe, a store
    without the table, or one that refused the query (the message names which)."""

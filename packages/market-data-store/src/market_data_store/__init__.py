"""market-data-store: persistence, write coordinator with backpressure, HTTP service, CLI.

>>> from market_data_store import Store, StoreSettings
>>> settings = StoreSettings()            # MDS_* environment; SQLite file by default
"""

from importlib.metadata import version as _version

from market_data_store.backends.base import Backend, Freshness, Record, WriteResult
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import (
    BackendError,
    CircuitOpenError,
    CoordinatorStoppedError,
    PermanentBackendError,
    QueueFullError,
    StoreConfigurationError,
    StoreError,
    TransientBackendError,
)
from market_data_store.settings import StoreSettings

__version__ = _version("market-data-store")


def __getattr__(name: str) -> object:
    # Store pulls in the coordinator and its dependencies: import it on first use.
    if name == "Store":
        from market_data_store.store import Store  # noqa: PLC0415

        return Store
    raise AttributeError(name)


__all__ = [
    "Backend",
    "BackendError",
    "CircuitOpenError",
    "CoordinatorStoppedError",
    "DatabaseUrl",
    "Freshness",
    "PermanentBackendError",
    "QueueFullError",
    "Record",
    "Store",
    "StoreConfigurationError",
    "StoreError",
    "StoreSettings",
    "TransientBackendError",
    "WriteResult",
    "__version__",
]

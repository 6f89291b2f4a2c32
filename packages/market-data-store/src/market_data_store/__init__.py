"""market-data-store: persistence, write coordinator with backpressure, HTTP service, CLI.

>>> from market_data_store import Store, StoreSettings
>>> settings = StoreSettings()            # MDS_* environment; SQLite file by default
>>> import market_data_store as mds
>>> bars = mds.connect("market_data.db").bars(None, "5m").to_pandas()   # read it back

The names below are imported on first use (PEP 562): ``import market_data_store`` and
``mds --help`` do not pay for SQLAlchemy, the coordinator or the backends until needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_core.lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_store.backends.base import Backend, Freshness, Record, WriteResult
    from market_data_store.dsn import DatabaseUrl
    from market_data_store.exceptions import (
        BackendError,
        CircuitOpenError,
        CoordinatorStoppedError,
        PermanentBackendError,
        QueueFullError,
        ReadError,
        StoreConfigurationError,
        StoreError,
        TransientBackendError,
    )
    from market_data_store.read import (
        AsyncReader,
        Reader,
        Selection,
        asof_join,
        connect,
        connect_async,
    )
    from market_data_store.settings import StoreSettings
    from market_data_store.store import Store

    __version__: str

_LAZY: dict[str, tuple[str, ...]] = {
    "backends.base": ("Backend", "Freshness", "Record", "WriteResult"),
    "dsn": ("DatabaseUrl",),
    "exceptions": (
        "BackendError", "CircuitOpenError", "CoordinatorStoppedError", "PermanentBackendError",
        "QueueFullError", "ReadError", "StoreConfigurationError", "StoreError",
        "TransientBackendError",
    ),
    "read": ("AsyncReader", "Reader", "Selection", "asof_join", "connect", "connect_async"),
    "settings": ("StoreSettings",),
    "store": ("Store",),
}  # fmt: skip
"""The module of each public name (imported from there on first access)."""
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), version_of="market-data-store")


__all__ = [
    "AsyncReader",
    "Backend",
    "BackendError",
    "CircuitOpenError",
    "CoordinatorStoppedError",
    "DatabaseUrl",
    "Freshness",
    "PermanentBackendError",
    "QueueFullError",
    "ReadError",
    "Reader",
    "Record",
    "Selection",
    "Store",
    "StoreConfigurationError",
    "StoreError",
    "StoreSettings",
    "TransientBackendError",
    "WriteResult",
    "__version__",
    "asof_join",
    "connect",
    "connect_async",
]

import importlib.metadata

import market_data_store

EXPECTED = {
    "Backend", "BackendError", "CircuitOpenError", "CoordinatorStoppedError", "DatabaseUrl",
    "Freshness", "PermanentBackendError", "QueueFullError", "Record", "Store",
    "StoreConfigurationError", "StoreError", "StoreSettings", "TransientBackendError",
    "WriteResult", "__version__",
    # reads (issue 27)
    "AsyncReader", "ReadError", "Reader", "Selection", "asof_join", "connect", "connect_async",
}  # fmt: skip


def test_version_matches_installed_distribution() -> None:
    assert market_data_store.__version__ == importlib.metadata.version("market-data-store")


def test_public_api_is_pinned() -> None:
    assert set(market_data_store.__all__) == EXPECTED
    assert all(getattr(market_data_store, name) is not None for name in EXPECTED)

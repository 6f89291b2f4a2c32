import importlib.metadata

import market_data_store


def test_version_matches_installed_distribution() -> None:
    assert market_data_store.__version__ == importlib.metadata.version("market-data-store")


def test_exports_only_what_exists() -> None:
    # A placeholder must not pretend to offer an API it does not have.
    assert market_data_store.__all__ == ["__version__"]

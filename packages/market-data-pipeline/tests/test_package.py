import importlib.metadata

import market_data_pipeline


def test_version_matches_installed_distribution() -> None:
    assert market_data_pipeline.__version__ == importlib.metadata.version("market-data-pipeline")


def test_exports_only_what_exists() -> None:
    # A placeholder must not pretend to offer an API it does not have.
    assert market_data_pipeline.__all__ == ["__version__"]

"""Versions: of this distribution, and of the contracts it defines.

``CONTRACT_VERSION`` follows semantic versioning and is what peers compare: within a major
version changes are additive only (new optional fields, new contracts); readers ignore
fields they do not know. ``market_data_core.compat`` checks the rule; see docs/contracts.md.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["CONTRACT_VERSION", "__version__"]

CONTRACT_VERSION = "1.3.0"

try:
    __version__ = version("market-data-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
    __version__ = "0.0.0+unknown"

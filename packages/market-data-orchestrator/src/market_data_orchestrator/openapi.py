"""The API's OpenAPI spec as committed text (stable, sorted), for the drift check.

``mdo openapi -o docs/openapi/market-data-orchestrator.json`` writes it; a test fails when
the committed file and the code differ.
"""

from __future__ import annotations

from market_data_core.openapi import spec_text as core_spec_text

__all__ = ["spec_text"]


def spec_text() -> str:
    """The spec of an app over an empty deployment (the routes do not depend on its jobs)."""
    from market_data_orchestrator.deployment import Deployment  # noqa: PLC0415
    from market_data_orchestrator.orchestrator import Orchestrator  # noqa: PLC0415
    from market_data_orchestrator.service import create_app  # noqa: PLC0415

    return core_spec_text(create_app(Orchestrator(Deployment()), manage=False))

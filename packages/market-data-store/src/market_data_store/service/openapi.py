"""The service's OpenAPI spec as committed text (stable, sorted), for the drift check."""

from __future__ import annotations

from pydantic import SecretStr

from market_data_core.openapi import spec_text as core_spec_text
from market_data_store.settings import StoreSettings

__all__ = ["spec_text"]


def spec_text() -> str:
    """The spec of an app built with every optional route enabled (an admin token set)."""
    from market_data_store.service.app import create_app  # noqa: PLC0415

    settings = StoreSettings(admin_token=SecretStr("spec-generation-only"))
    return core_spec_text(create_app(settings, migrate_on_start=False))

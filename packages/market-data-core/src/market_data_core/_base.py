"""Base classes of the contracts (private).

``InputModel`` is for records users write (market data, configs): unknown fields are an
error, so a typo cannot silently drop data. ``PeerModel`` is for messages read from other
services (telemetry, health, federation): unknown fields are ignored, so an older reader
keeps working when a newer peer adds a field (the compatibility rule in docs/contracts.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["InputModel", "PeerModel"]


class InputModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class PeerModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

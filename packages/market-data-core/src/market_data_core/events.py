"""Event envelopes: a typed payload with the metadata to route, order and evolve it."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Generic, TypeVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from market_data_core._types import UtcDatetime

__all__ = ["EventEnvelope", "EventMeta", "Track"]

PayloadT = TypeVar("PayloadT")


class Track(StrEnum):
    """``live`` events happen now; ``backfill`` events replay history. Consumers may treat
    them differently (a live dashboard ignores backfill)."""

    LIVE = "live"
    BACKFILL = "backfill"


class EventMeta(BaseModel):
    """What a consumer needs before it looks at the payload."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_id: Annotated[
        str, StringConstraints(pattern=r"^[a-z][a-z0-9_.\-]*(/v[0-9]+)?$", max_length=128)
    ] = Field(description="Payload contract and major version, e.g. 'market_data.bar/v1'.")
    track: Track = Track.LIVE
    headers: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], str] = Field(
        default_factory=dict
    )


class EventEnvelope(BaseModel, Generic[PayloadT]):
    """An event: ``payload`` keyed by ``key`` (a partition key such as a symbol) at ``ts``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID = Field(default_factory=uuid4)
    key: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    ts: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))
    meta: EventMeta
    payload: PayloadT

"""Shared pieces of the routes: the service state and its dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from market_data_core.ratelimit import AuditedRateLimiter
from market_data_store.backfill import BackfillRunner
from market_data_store.jobs import JobRunTracker
from market_data_store.read.sources import Source
from market_data_store.service.idempotency import IdempotencyCache
from market_data_store.service.metrics import StoreMetrics
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

__all__ = ["ServiceState", "State"]


@dataclass
class ServiceState:
    store: Store
    settings: StoreSettings
    metrics: StoreMetrics
    idempotency: IdempotencyCache = field(default_factory=IdempotencyCache)
    backfills: BackfillRunner | None = None
    decoding: int = 0
    """Bytes of ingest bodies being decoded now (see ``max_decoding_bytes``)."""
    reads: Source | None = None
    """The bulk reads' source: the service's own database (``service.read``)."""
    refusals: AuditedRateLimiter = field(init=False)
    """Refused (401) admin calls per client address (see ``admin_refusals_per_minute``)."""

    def __post_init__(self) -> None:
        self.refusals = AuditedRateLimiter(
            self.settings.admin_refusals_per_minute, burst=self.settings.admin_refusals_burst
        )

    def backfill_runner(self) -> BackfillRunner:
        if self.backfills is None:
            self.backfills = BackfillRunner(JobRunTracker(self.store.backend))
        return self.backfills


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(_state)]

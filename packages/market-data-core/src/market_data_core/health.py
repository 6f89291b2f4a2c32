"""Health contracts and the worst-of rule.

``/healthz`` is liveness: a ``HealthStatus.alive`` body (healthy, no components, no
dependency I/O: the process serves). ``/readyz`` returns a ``HealthStatus`` built from
cached component checks, and 503 when its state is ``unhealthy``. The overall state is
worst-of over components: any *required* component unhealthy -> unhealthy; otherwise any
component degraded or an optional one unhealthy -> degraded; otherwise healthy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from market_data_core._base import PeerModel
from market_data_core._types import Identifier, UtcDatetime
from market_data_core.signals import SignalValue

__all__ = [
    "HealthComponent",
    "HealthState",
    "HealthStatus",
    "Probe",
    "ProbeKind",
    "worst_of",
]


class HealthState(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def http_status(self) -> int:
        """What ``/readyz`` answers for this state: 503 only when unhealthy."""
        return 503 if self is HealthState.UNHEALTHY else 200


_SEVERITY = {HealthState.HEALTHY: 0, HealthState.DEGRADED: 1, HealthState.UNHEALTHY: 2}


def worst_of(states: Iterable[HealthState]) -> HealthState:
    """The most severe state; ``healthy`` for none."""
    return max(states, key=_SEVERITY.__getitem__, default=HealthState.HEALTHY)


class HealthComponent(PeerModel):
    """One dependency or part of a service and its state.

    A component that is not ``required`` (a cache, an optional transport) can make the
    service degraded but never unhealthy.
    """

    name: Identifier
    state: HealthState
    required: bool = True
    details: Mapping[
        Annotated[str, StringConstraints(min_length=1, max_length=64)], SignalValue
    ] = Field(default_factory=dict)

    @property
    def effective_state(self) -> HealthState:
        """Its contribution to the service's state under the worst-of rule."""
        if not self.required and self.state is HealthState.UNHEALTHY:
            return HealthState.DEGRADED
        return self.state


class HealthStatus(PeerModel):
    """A service's health: its state and the components it was derived from."""

    service: Identifier
    state: HealthState
    components: tuple[HealthComponent, ...] = ()
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    ts: UtcDatetime

    @model_validator(mode="after")
    def _unique_components(self) -> HealthStatus:
        names = [component.name for component in self.components]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            msg = f"duplicate component names: {', '.join(duplicates)}"
            raise ValueError(msg)
        return self

    @classmethod
    def from_components(
        cls,
        service: str,
        components: Iterable[HealthComponent],
        *,
        version: str,
        ts: datetime | None = None,
    ) -> HealthStatus:
        """Build a status whose state is the worst-of over ``components``."""
        parts = tuple(components)
        return cls(
            service=service,
            state=worst_of(component.effective_state for component in parts),
            components=parts,
            version=version,
            ts=ts or datetime.now(UTC),
        )

    @classmethod
    def alive(cls, service: str, *, version: str, ts: datetime | None = None) -> HealthStatus:
        """The liveness answer of a process that serves: healthy, with no components
        (no dependency was asked), so ``/healthz`` and ``/readyz`` share one contract."""
        return cls(
            service=service, state=HealthState.HEALTHY, version=version, ts=ts or datetime.now(UTC)
        )

    def component(self, name: str) -> HealthComponent | None:
        return next((c for c in self.components if c.name == name), None)

    def as_component(self, *, required: bool = True) -> HealthComponent:
        """This whole service as one component of another service's health."""
        return HealthComponent(
            name=self.service,
            state=self.state,
            required=required,
            details={"version": self.version, "ts": self.ts.isoformat()},
        )

    @property
    def http_status(self) -> int:
        return self.state.http_status


class ProbeKind(StrEnum):
    LIVENESS = "liveness"
    READINESS = "readiness"


class Probe(PeerModel):
    """How to check a peer's health: where, how often, and how many results flip its state.

    ``failure_threshold`` consecutive failures make it unhealthy and ``success_threshold``
    consecutive successes make it healthy again, so one slow answer does not cause flapping.
    """

    name: Identifier
    kind: ProbeKind = ProbeKind.READINESS
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048)]
    interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 2.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    success_threshold: Annotated[int, Field(ge=1, le=100)] = 2

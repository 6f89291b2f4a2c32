"""The interfaces the packages implement for each other, as ``typing.Protocol``s.

They are structural: a class satisfies one by having the methods, with no import of this
module. The runtime-checkable ones can be verified with ``isinstance`` at wiring time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from market_data_core.control import ControlAction, ControlResult
from market_data_core.health import HealthComponent
from market_data_core.telemetry import BackpressureLevel, FeedbackEvent, RateAdjustment

__all__ = [
    "FeedbackPublisher",
    "FeedbackSubscriber",
    "PipelineRunner",
    "RateController",
    "Sink",
    "Source",
    "TelemetryMessage",
    "Transform",
]

TelemetryMessage = FeedbackEvent | RateAdjustment
"""What travels on a feedback transport."""

T_co = TypeVar("T_co", covariant=True)
T_contra = TypeVar("T_contra", contravariant=True)
In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)


@runtime_checkable
class FeedbackPublisher(Protocol):
    """Publishes telemetry (a coordinator's ``FeedbackEvent``s, a provider's
    ``RateAdjustment``s). Publishing is best effort and never raises for a transport that
    is down: the transport reports that through its health instead."""

    async def publish(self, message: TelemetryMessage) -> None: ...


@runtime_checkable
class FeedbackSubscriber(Protocol):
    """Reads telemetry with stale sequence numbers dropped and a staleness TTL applied."""

    def level(self, coordinator_id: str) -> BackpressureLevel | None:
        """The coordinator's current level, or ``None`` when unknown (never heard from, or
        silent past the TTL): hold the current rate, never go to full speed."""
        ...

    def latest(self, coordinator_id: str) -> FeedbackEvent | None: ...

    def latest_rate(self, provider: str) -> RateAdjustment | None: ...

    def __aiter__(self) -> AsyncIterator[TelemetryMessage]: ...


@runtime_checkable
class RateController(Protocol):
    """Turns feedback into a rate for a provider: ok -> full, soft -> reduced, hard -> paused."""

    @property
    def scale(self) -> float:
        """The current fraction of the full rate, 0 (paused) to 1."""
        ...

    async def on_feedback(self, event: FeedbackEvent) -> RateAdjustment | None:
        """Apply an event; return the adjustment when the rate changed."""
        ...

    async def acquire(self, count: int = 1) -> None:
        """Wait until ``count`` more items may be emitted (blocks while paused)."""
        ...


class Source(Protocol[T_co]):
    """Produces batches of records until exhausted or closed."""

    @property
    def name(self) -> str: ...

    def batches(self) -> AsyncIterator[Sequence[T_co]]: ...

    async def aclose(self) -> None: ...


class Sink(Protocol[T_contra]):
    """Consumes batches; a batch is durable (or handed on) when ``write`` returns."""

    @property
    def name(self) -> str: ...

    async def write(self, batch: Sequence[T_contra]) -> None: ...

    async def aclose(self) -> None: ...


class Transform(Protocol[In_contra, Out_co]):
    """A stateless or stateful step from one batch to the next; may return an empty batch."""

    def __call__(self, batch: Sequence[In_contra], /) -> Sequence[Out_co]: ...


@runtime_checkable
class PipelineRunner(Protocol):
    """Something that runs a pipeline job and can be controlled by the orchestrator."""

    @property
    def state(self) -> str: ...

    async def run(self) -> None: ...

    async def stop(self, *, drain: bool = True) -> None: ...

    async def control(self, action: ControlAction) -> ControlResult: ...

    def health(self) -> HealthComponent: ...

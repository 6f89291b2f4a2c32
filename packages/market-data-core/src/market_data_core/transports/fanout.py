"""One feedback publisher that delivers to many: the store's bus plus Redis, a provider's
rate adjustments to every transport configured.

Every subscriber gets every message, in order; one that raises is logged (with its type
as a field) and skipped, so a bad subscriber never stops the others. The fan-out keeps the
list it is given (not a copy): publishers added to it later receive too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Protocol

from market_data_core.protocols import TelemetryMessage

__all__ = ["FeedbackFanOut", "Publishes"]

logger = logging.getLogger(__name__)


class Publishes(Protocol):
    """What the fan-out delivers to: any ``FeedbackPublisher`` (whatever its ``publish``
    returns: Redis's says whether it was sent)."""

    def publish(self, message: TelemetryMessage, /) -> Awaitable[object]: ...


class FeedbackFanOut:
    """A ``FeedbackPublisher`` that publishes to each of ``publishers`` (see the module)."""

    def __init__(self, publishers: Sequence[Publishes]) -> None:
        self.publishers = publishers

    async def publish(self, message: TelemetryMessage) -> None:
        """Deliver ``message`` to every publisher; one failing is logged, never raised."""
        for publisher in self.publishers:
            try:
                await publisher.publish(message)
            except Exception:
                logger.exception(
                    "feedback publisher failed",
                    extra={
                        "publisher": type(publisher).__name__,
                        "telemetry": type(message).__name__,
                    },
                )

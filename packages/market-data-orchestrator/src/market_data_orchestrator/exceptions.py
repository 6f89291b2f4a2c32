"""Errors raised by market-data-orchestrator.

All derive from core's ``MarketDataError``::

    MarketDataError (market_data_core)
    └── OrchestratorError
        ├── DeploymentError          a deployment file cannot be read or is invalid
        │                            (also a core ConfigurationError)
        ├── IllegalTransitionError   a job state change the lifecycle does not allow
        │                            (also a core ConfigurationError)
        ├── SupervisorClosedError    the supervisor was closed: it starts nothing any more
        │                            (also a RuntimeError)
        └── AccessError              an API call was refused; carries the HTTP answer
            ├── UnauthenticatedError   401   missing, malformed or unknown bearer token
            ├── ForbiddenError         403   authenticated, but the role is too low
            └── RateLimitedError       429   too many calls; ``retry_after`` seconds

The modules that raise them re-export them (``market_data_orchestrator.security``,
``.deployment``, ``.lifecycle``, ``.supervisor``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from market_data_core.exceptions import ConfigurationError, MarketDataError

if TYPE_CHECKING:
    from market_data_orchestrator.deployment import Role
    from market_data_orchestrator.jobs import JobState
    from market_data_orchestrator.security import Principal

__all__ = [
    "AccessError",
    "DeploymentError",
    "ForbiddenError",
    "IllegalTransitionError",
    "OrchestratorError",
    "RateLimitedError",
    "SupervisorClosedError",
    "UnauthenticatedError",
]


class OrchestratorError(MarketDataError):
    """Root of the orchestrator's errors."""


class DeploymentError(OrchestratorError, ConfigurationError):
    """A deployment file cannot be read or is invalid; the message names file, line, field."""


class IllegalTransitionError(OrchestratorError, ConfigurationError):
    """A state change the lifecycle does not allow."""

    def __init__(self, current: JobState, new: JobState, allowed: Iterable[JobState]) -> None:
        """``allowed``: the states the lifecycle allows from ``current``."""
        named = ", ".join(sorted(allowed)) or "nothing"
        super().__init__(f"illegal transition {current} -> {new} (from {current}: {named})")
        self.current = current
        self.new = new


class SupervisorClosedError(OrchestratorError, RuntimeError):
    """The supervisor was closed: it starts nothing any more."""


class AccessError(OrchestratorError):
    """A call was refused; ``status_code`` and ``headers`` are what the API answers."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        return {}


class UnauthenticatedError(AccessError):
    """No valid bearer token (401)."""

    status_code = 401

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class ForbiddenError(AccessError):
    """The caller's role is below what the action needs (403)."""

    status_code = 403

    def __init__(self, message: str, *, principal: Principal, required: Role) -> None:
        super().__init__(message)
        self.principal = principal
        self.required = required


class RateLimitedError(AccessError):
    """The caller used up its budget (429); retry after ``retry_after`` seconds.

    ``audited`` is False for a refusal that is only counted (see ``AuditedRateLimiter``).
    """

    status_code = 429

    def __init__(self, caller: str, retry_after: float, *, audited: bool = True) -> None:
        super().__init__(f"rate limit exceeded for {caller!r}; retry in {retry_after:.1f}s")
        self.caller = caller
        self.retry_after = retry_after
        self.audited = audited

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

"""Control actions on jobs, their results, and the audit record of every call."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import UUID, uuid4

from pydantic import Field, StringConstraints

from market_data_core._base import PeerModel
from market_data_core._types import Identifier, UtcDatetime
from market_data_core.signals import SignalValue

__all__ = ["AuditEnvelope", "AuditOutcome", "ControlAction", "ControlResult", "ControlStatus"]

_Text = Annotated[str, StringConstraints(max_length=1024)]


class ControlAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    RELOAD = "reload"


class ControlStatus(StrEnum):
    """``accepted``: done (or already so); ``rejected``: not allowed in the current state;
    ``failed``: tried and did not work."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"


class ControlResult(PeerModel):
    """The answer to a control action on a target (a job, a node)."""

    action: ControlAction
    target: Identifier
    status: ControlStatus
    message: _Text = ""
    ts: UtcDatetime

    @property
    def ok(self) -> bool:
        return self.status is ControlStatus.ACCEPTED


class AuditOutcome(StrEnum):
    """``allowed``: authorised and carried out; ``denied``: refused by authn/authz or a rate
    limit; ``failed``: authorised but it did not work."""

    ALLOWED = "allowed"
    DENIED = "denied"
    FAILED = "failed"


class AuditEnvelope(PeerModel):
    """One audited call: who (``actor``, ``role``) did what (``action`` on ``target``) and
    what came of it. Never carries credentials: ``actor`` is a name, not a token."""

    id: UUID = Field(default_factory=uuid4)
    actor: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    role: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    action: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    target: Annotated[str, StringConstraints(max_length=256)] | None = None
    result: AuditOutcome
    reason: _Text | None = None
    service: Identifier | None = None
    request_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    details: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], SignalValue] = (
        Field(default_factory=dict)
    )
    ts: UtcDatetime

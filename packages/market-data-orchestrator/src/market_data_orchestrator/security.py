"""Who may call the API, and how often: bearer tokens, roles and per-caller rate limits.

Tokens are configured as the hex SHA-256 of the token (``TokenSpec.sha256``), never the
token itself. ``Authenticator.authenticate`` hashes the presented token and compares the
digest with *every* configured digest using ``hmac.compare_digest`` (constant time, no
early exit), so neither the position nor a prefix of a valid token leaks through timing.

Roles are ordered viewer < operator < admin (``Role.allows``). Errors carry the HTTP
status the API answers with::

    AccessError                     (market_data_orchestrator.exceptions.OrchestratorError)
    ├── UnauthenticatedError   401       missing, malformed or unknown bearer token
    ├── ForbiddenError         403       authenticated, but the role is too low
    └── RateLimitedError       429       too many calls; ``retry_after`` seconds

``RateLimiter`` and ``AuditedRateLimiter`` are ``market_data_core.ratelimit``'s, raising
``RateLimitedError`` from ``enforce``. The API uses one for the control calls of each token
and one for the refused (401) calls of each client address.

Generate a token and the digest to configure with
``python -m market_data_orchestrator.security``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from market_data_core import ratelimit
from market_data_core.exceptions import ConfigurationError
from market_data_core.ratelimit import Admission
from market_data_orchestrator.deployment import Role, TokenSpec
from market_data_orchestrator.exceptions import (
    AccessError,
    ForbiddenError,
    RateLimitedError,
    UnauthenticatedError,
)

__all__ = [
    "AccessError",
    "Admission",
    "AuditedRateLimiter",
    "Authenticator",
    "ForbiddenError",
    "Principal",
    "RateLimitedError",
    "RateLimiter",
    "Role",
    "TokenSpec",
    "UnauthenticatedError",
    "generate_token",
    "hash_token",
    "require",
]

Compare = Callable[[bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the token's configured name and role (never the token)."""

    name: str
    role: Role


def hash_token(token: str) -> str:
    """The lower-case hex SHA-256 of ``token``: what the configuration stores."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token(nbytes: int = 32) -> tuple[str, str]:
    """A new random token and its digest: ``(token, hash_token(token))``."""
    token = secrets.token_urlsafe(nbytes)
    return token, hash_token(token)


def require(principal: Principal, role: Role) -> Principal:
    """Return ``principal`` when its role allows ``role``; else raise ``ForbiddenError``."""
    if not principal.role.allows(role):
        msg = f"{principal.name!r} has role {principal.role.value}; this needs {role.value}"
        raise ForbiddenError(msg, principal=principal, required=role)
    return principal


class Authenticator:
    """Turns an ``Authorization: Bearer <token>`` header into a ``Principal``."""

    def __init__(self, tokens: Iterable[TokenSpec], *, compare: Compare = hmac.compare_digest):
        self._entries: list[tuple[bytes, Principal]] = []
        seen: set[str] = set()
        for spec in tokens:
            digest = spec.sha256.lower()
            if digest in seen:
                msg = f"token {spec.name!r} has the same digest as another token"
                raise ConfigurationError(msg)
            seen.add(digest)
            self._entries.append((digest.encode(), Principal(spec.name, spec.role)))
        self._compare = compare

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind ``authorization``; ``UnauthenticatedError`` when there is none."""
        if not authorization or not authorization.strip():
            raise UnauthenticatedError("missing bearer token")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("malformed Authorization header; expected 'Bearer <token>'")
        digest = hash_token(token).encode()
        found: Principal | None = None
        for expected, principal in self._entries:  # every entry, no early exit
            if self._compare(digest, expected) and found is None:
                found = principal
        if found is None:
            raise UnauthenticatedError("unknown bearer token")
        return found


class RateLimiter(ratelimit.RateLimiter):
    """``market_data_core.ratelimit.RateLimiter`` that raises ``RateLimitedError``."""

    def enforce(self, caller: str) -> None:
        """Like ``check``, but raise ``RateLimitedError`` when the caller must wait."""
        wait = self.check(caller)
        if wait is not None:
            raise RateLimitedError(caller, wait)


class AuditedRateLimiter(ratelimit.AuditedRateLimiter):
    """``market_data_core.ratelimit.AuditedRateLimiter`` that raises ``RateLimitedError``."""

    def enforce(self, caller: str) -> int:
        """Admit ``caller`` or raise ``RateLimitedError``; the refusals its record reports."""
        admission = self.admit(caller)
        if admission.retry_after is not None:
            raise RateLimitedError(caller, admission.retry_after, audited=admission.audited)
        return admission.suppressed


def main(argv: list[str] | None = None) -> int:
    """Print a new token and the ``sha256`` to put in the deployment's ``security.tokens``."""
    del argv
    token, digest = generate_token()
    sys.stdout.write(f"token:  {token}\nsha256: {digest}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

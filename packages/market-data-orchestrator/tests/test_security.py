"""Bearer tokens hashed at rest, roles, and the per-caller rate limit."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import subprocess
import sys

import pytest

from market_data_core.exceptions import ConfigurationError
from market_data_core.testing import FakeClock
from market_data_orchestrator.security import (
    AuditedRateLimiter,
    Authenticator,
    ForbiddenError,
    Principal,
    RateLimitedError,
    RateLimiter,
    Role,
    TokenSpec,
    UnauthenticatedError,
    generate_token,
    hash_token,
    require,
)

TOKENS = {"alice": "viewer-token-a1", "bob": "operator-token-b2", "root": "admin-token-c3"}
ROLES = {"alice": Role.VIEWER, "bob": Role.OPERATOR, "root": Role.ADMIN}


def specs() -> list[TokenSpec]:
    return [
        TokenSpec(name=name, role=ROLES[name], sha256=hash_token(token))
        for name, token in TOKENS.items()
    ]


def test_hash_token_is_sha256_hex() -> None:
    assert hash_token("secret") == hashlib.sha256(b"secret").hexdigest()
    assert len(hash_token("x")) == 64


def test_generate_token_pairs_token_and_digest() -> None:
    token, digest = generate_token()
    other, _ = generate_token()
    assert hash_token(token) == digest
    assert token != other
    assert len(token) >= 40


def test_cli_helper_prints_a_usable_pair() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "market_data_orchestrator.security"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    assert hash_token(lines["token"].strip()) == lines["sha256"].strip()


@pytest.mark.parametrize("name", list(TOKENS))
def test_authenticate_known_tokens(name: str) -> None:
    auth = Authenticator(specs())
    assert auth.authenticate(f"Bearer {TOKENS[name]}") == Principal(name, ROLES[name])
    assert auth.authenticate(f"bearer   {TOKENS[name]} ") == Principal(name, ROLES[name])


def test_upper_case_digest_in_config_still_matches() -> None:
    spec = TokenSpec(name="ops", role=Role.OPERATOR, sha256=hash_token("t0k").upper())
    assert Authenticator([spec]).authenticate("Bearer t0k").name == "ops"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("Bearer", "malformed"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        (TOKENS["bob"], "malformed"),
        ("Bearer not-a-configured-token", "unknown"),
        (f"Bearer {hash_token(TOKENS['bob'])}", "unknown"),  # the digest is not the token
    ],
)
def test_unauthenticated_is_401(header: str | None, reason: str) -> None:
    with pytest.raises(UnauthenticatedError, match=reason) as caught:
        Authenticator(specs()).authenticate(header)
    assert caught.value.status_code == 401
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
    assert "token-b2" not in str(caught.value)


class CountingCompare:
    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a: bytes, b: bytes) -> bool:
        self.calls.append((a, b))
        return hmac.compare_digest(a, b)


@pytest.mark.parametrize("header", ["Bearer viewer-token-a1", "Bearer admin-token-c3", "Bearer x"])
def test_every_entry_is_compared_whatever_matches(header: str) -> None:
    compare = CountingCompare()
    auth = Authenticator(specs(), compare=compare)
    with contextlib.suppress(UnauthenticatedError):
        auth.authenticate(header)
    assert len(compare.calls) == len(TOKENS)
    presented = hash_token(header.split()[1]).encode()
    assert all(a == presented for a, _ in compare.calls)
    assert {b for _, b in compare.calls} == {hash_token(t).encode() for t in TOKENS.values()}


def test_digests_only_are_kept() -> None:
    auth = Authenticator(specs())
    assert len(auth) == 3
    assert not any(token in repr(vars(auth)) for token in TOKENS.values())


def test_duplicate_digest_is_a_configuration_error() -> None:
    twice = [
        TokenSpec(name="a", role=Role.VIEWER, sha256=hash_token("same")),
        TokenSpec(name="b", role=Role.ADMIN, sha256=hash_token("same")),
    ]
    with pytest.raises(ConfigurationError, match="same digest"):
        Authenticator(twice)


def test_role_ordering() -> None:
    order = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
    assert sorted(Role, key=lambda r: r.level) == order
    for i, have in enumerate(order):
        for j, need in enumerate(order):
            assert have.allows(need) is (i >= j)


@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.OPERATOR, False),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMIN, False),
        (Role.ADMIN, Role.OPERATOR, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_require_is_403_when_too_low(role: Role, needed: Role, allowed: bool) -> None:
    principal = Principal("someone", role)
    if allowed:
        assert require(principal, needed) is principal
        return
    with pytest.raises(ForbiddenError) as caught:
        require(principal, needed)
    assert caught.value.status_code == 403
    assert caught.value.required is needed
    assert caught.value.principal is principal
    assert needed.value in str(caught.value)


def test_rate_limiter_burst_and_enforce() -> None:
    clock = FakeClock()
    limiter = RateLimiter(30, burst=2, clock=clock)
    limiter.enforce("ops")
    limiter.enforce("ops")
    with pytest.raises(RateLimitedError) as caught:
        limiter.enforce("ops")
    assert caught.value.status_code == 429
    assert caught.value.retry_after == pytest.approx(2.0)
    assert caught.value.headers == {"Retry-After": "2"}
    clock.now += 0.5
    with pytest.raises(RateLimitedError) as again:
        limiter.enforce("ops")
    assert again.value.headers == {"Retry-After": "2"}  # 1.5 s rounds up
    assert again.value.retry_after == pytest.approx(1.5)


def test_audited_limiter_enforce_raises_with_what_to_audit() -> None:
    limiter = AuditedRateLimiter(30, burst=1, clock=FakeClock())
    assert limiter.enforce("ops") == 0
    with pytest.raises(RateLimitedError) as first:
        limiter.enforce("ops")
    with pytest.raises(RateLimitedError) as second:
        limiter.enforce("ops")
    assert (first.value.audited, second.value.audited) == (True, False)
    assert second.value.headers == {"Retry-After": "2"}

"""Per-caller rate limits (token buckets) and the audited limiter that keeps an audit log
bounded: of a burst of refused calls only the first is audited."""

from __future__ import annotations

import pytest

from market_data_core.exceptions import ConfigurationError
from market_data_core.ratelimit import Admission, AuditedRateLimiter, RateLimiter
from market_data_core.testing import FakeClock


def test_rate_limiter_bucket_and_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6, clock=clock)  # 6 a minute: one token every 10 s, burst 6
    assert [limiter.check("bob") for _ in range(6)] == [None] * 6
    assert limiter.check("bob") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.check("bob") == pytest.approx(6.0)  # a refused call takes nothing
    clock.now += 6
    assert limiter.check("bob") is None
    assert limiter.check("bob") == pytest.approx(10.0)
    assert limiter.check("alice") is None  # per caller
    clock.now += 3600
    assert [limiter.check("bob") for _ in range(7)] == [None] * 6 + [pytest.approx(10.0)]


def test_rate_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, burst=1, clock=clock, max_callers=3)
    for name in "abc":
        assert limiter.check(name) is None
    assert limiter.check("d") is None  # all busy: the stalest is forgotten
    assert len(limiter._buckets) == 3
    clock.now += 10
    assert limiter.check("e") is None  # full idle buckets are pruned first
    assert len(limiter._buckets) == 1


@pytest.mark.parametrize("kwargs", [{"per_minute": 0}, {"per_minute": 5, "burst": 0}])
def test_rate_limiter_rejects_nonsense(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        RateLimiter(**kwargs)


def test_audited_limiter_audits_the_first_refusal_of_a_burst_and_counts_the_rest() -> None:
    clock = FakeClock()
    limiter = AuditedRateLimiter(6, burst=2, clock=clock)  # one token every 10 s
    assert [limiter.admit("10.0.0.1") for _ in range(2)] == [Admission(None, True, 0)] * 2
    first, *rest = [limiter.admit("10.0.0.1") for _ in range(5)]
    assert first == Admission(pytest.approx(10.0), audited=True, suppressed=0)
    assert [(a.admitted, a.audited) for a in rest] == [(False, False)] * 4
    assert limiter.admit("10.0.0.2").admitted  # another caller, its own budget
    clock.now += 10
    back = limiter.admit("10.0.0.1")
    assert (back.admitted, back.audited, back.suppressed) == (True, True, 4)
    again = limiter.admit("10.0.0.1")  # a new burst: its first refusal is audited again
    assert (again.admitted, again.audited, again.suppressed) == (False, True, 0)
    assert limiter.suppressed_total == 4


def test_audited_limiter_bounds_the_records_a_minute_whatever_the_caller_does() -> None:
    clock = FakeClock()
    limiter = AuditedRateLimiter(6, burst=3, clock=clock)
    audited = 0
    for _ in range(6000):  # a call every 10 ms for a minute
        audited += limiter.admit("flood").audited
        clock.now += 0.01
    assert audited <= 3 + 2 * 6


def test_audited_limiter_memory_is_bounded() -> None:
    limiter = AuditedRateLimiter(60, burst=1, clock=FakeClock(), max_callers=3)
    for name in "abcdef":
        limiter.admit(name)
        limiter.admit(name)  # refused: remembered as in a burst
    assert len(limiter._refused) == 3

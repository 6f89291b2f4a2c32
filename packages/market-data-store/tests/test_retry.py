"""RetryPolicy (backoff, full jitter, transient errors only) and CircuitBreaker (batches)."""

from types import SimpleNamespace

import pytest

from market_data_core import HealthState
from market_data_store.exceptions import (
    PermanentBackendError,
    StoreConfigurationError,
    TransientBackendError,
)
from market_data_store.retry import BreakerState, CircuitBreaker, RetryPolicy

pytestmark = pytest.mark.asyncio


class Sleeps:
    """An injectable ``sleep`` that records instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Flaky:
    """An operation that raises the given errors in turn, then returns ``"done"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


# -- RetryPolicy ---------------------------------------------------------------------------


async def test_delays_grow_exponentially_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(attempts=8, base_delay=0.1, max_delay=1.0, jitter=False)
    assert [policy.delay(k) for k in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


async def test_full_jitter_scales_the_capped_delay_by_the_random_draw() -> None:
    draws = iter([0.0, 0.5, 0.999])
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, random=lambda: next(draws))
    assert [policy.delay(4) for _ in range(3)] == pytest.approx([0.0, 0.4, 0.7992])


async def test_transient_errors_are_retried_with_backoff_until_success() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=5, base_delay=0.1, max_delay=10, jitter=False, sleep=sleeps)
    operation = Flaky(TransientBackendError("reset"), TransientBackendError("timeout"))
    seen: list[tuple[int, str, float]] = []
    result = await policy.call(
        operation, on_retry=lambda attempt, err, delay: seen.append((attempt, str(err), delay))
    )
    assert result == "done"
    assert operation.calls == 3
    assert sleeps.delays == pytest.approx([0.1, 0.2])
    assert seen == [(1, "reset", pytest.approx(0.1)), (2, "timeout", pytest.approx(0.2))]


async def test_the_last_transient_error_is_raised_when_attempts_run_out() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=3, base_delay=0.01, sleep=sleeps)
    operation = Flaky(*(TransientBackendError(f"try {i}") for i in range(1, 5)))
    with pytest.raises(TransientBackendError, match="try 3"):
        await policy.call(operation)
    assert operation.calls == 3
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize("error", [PermanentBackendError("bad row"), ValueError("bug")])
async def test_other_errors_are_not_retried(error: Exception) -> None:
    sleeps = Sleeps()
    operation = Flaky(error)
    with pytest.raises(type(error)):
        await RetryPolicy(attempts=5, sleep=sleeps).call(operation)
    assert operation.calls == 1
    assert sleeps.delays == []


async def test_one_attempt_means_no_retry() -> None:
    operation = Flaky(TransientBackendError("once"))
    with pytest.raises(TransientBackendError):
        await RetryPolicy(attempts=1, sleep=Sleeps()).call(operation)
    assert operation.calls == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"base_delay": -1.0}, "base_delay"),
        ({"base_delay": float("inf")}, "base_delay"),
        ({"base_delay": 1.0, "max_delay": 0.5}, "max_delay"),
    ],
)
async def test_invalid_policy_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(StoreConfigurationError, match=field):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# -- CircuitBreaker ------------------------------------------------------------------------


async def test_opens_after_n_consecutive_failed_batches(kit: SimpleNamespace) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=kit.FakeClock())
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.try_acquire()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.try_acquire()
    assert breaker.opens == 1


async def test_a_success_resets_the_consecutive_count(kit: SimpleNamespace) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=10, clock=kit.FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 1


async def test_half_opens_after_the_timeout_and_closes_on_a_trial_success(
    kit: SimpleNamespace,
) -> None:
    clock = kit.FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.advance(4.9)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire()  # the trial
    assert not breaker.try_acquire()  # one at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.try_acquire()
    assert breaker.try_acquire()


async def test_a_failed_trial_reopens_and_restarts_the_timeout(kit: SimpleNamespace) -> None:
    clock = kit.FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=5, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(5)
    assert breaker.try_acquire()
    breaker.record_failure()  # one failure is enough when half-open
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(5)
    assert breaker.opens == 2


async def test_a_released_trial_admits_another(kit: SimpleNamespace) -> None:
    clock = kit.FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1, clock=clock)
    breaker.record_failure()
    clock.advance(1)
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    breaker.release()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire()


async def test_health_follows_the_state(kit: SimpleNamespace) -> None:
    clock = kit.FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1, clock=clock)
    assert breaker.health().state is HealthState.HEALTHY
    breaker.record_failure()
    health = breaker.health()
    assert (health.name, health.state) == ("circuit_breaker", HealthState.UNHEALTHY)
    assert health.details["state"] == "open"
    assert health.details["consecutive_failures"] == 1
    clock.advance(1)
    assert breaker.health().state is HealthState.DEGRADED


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_timeout": float("nan")}, "reset_timeout"),
    ],
)
async def test_invalid_breaker_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(StoreConfigurationError, match=field):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]

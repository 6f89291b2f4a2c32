from hypothesis import given
from hypothesis import strategies as st

from market_data_core import HealthComponent, HealthState, HealthStatus, worst_of
from market_data_core.testing import T0, make_health_status
from market_data_core.testing.strategies import health_statuses

H, D, U = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY


def test_worst_of_table() -> None:
    assert worst_of([]) is H
    assert worst_of([H, H]) is H
    assert worst_of([H, D]) is D
    assert worst_of([D, U, H]) is U


def test_status_state_is_worst_of_required_components() -> None:
    assert make_health_status(H, H).state is H
    assert make_health_status(H, D).state is D
    assert make_health_status(D, U).state is U
    assert make_health_status().state is H


def test_optional_component_unhealthy_only_degrades() -> None:
    components = [
        HealthComponent(name="database", state=H),
        HealthComponent(name="feedback_transport", state=U, required=False),
    ]
    status = HealthStatus.from_components("store", components, version="1.0", ts=T0)
    assert status.state is D
    assert status.http_status == 200
    required_down = [*components, HealthComponent(name="queue", state=U)]
    status = HealthStatus.from_components("store", required_down, version="1.0", ts=T0)
    assert status.state is U
    assert status.http_status == 503
    assert status.component("queue") == required_down[2]
    assert status.component("nope") is None


def test_duplicate_component_names_are_rejected() -> None:
    import pytest
    from pydantic import ValidationError

    parts = [HealthComponent(name="db", state=H), HealthComponent(name="db", state=U)]
    with pytest.raises(ValidationError, match="duplicate component names: db"):
        HealthStatus.from_components("store", parts, version="1", ts=T0)


def test_a_service_folds_into_another_as_a_component() -> None:
    store = make_health_status(H, U, service="store")
    orchestrator = HealthStatus.from_components(
        "orchestrator",
        [store.as_component(), HealthComponent(name="jobs", state=H)],
        version="2",
        ts=T0,
    )
    assert orchestrator.state is U
    assert orchestrator.component("store") is not None
    optional = HealthStatus.from_components(
        "orchestrator", [store.as_component(required=False)], version="2", ts=T0
    )
    assert optional.state is D


@given(health_statuses())
def test_state_is_max_severity_of_effective_states(status: HealthStatus) -> None:
    severities = [c.effective_state.severity for c in status.components]
    assert status.state.severity == max(severities, default=0)
    if status.state is U:
        assert any(c.required and c.state is U for c in status.components)


@given(st.lists(st.sampled_from(HealthState)))
def test_worst_of_is_order_independent(states: list[HealthState]) -> None:
    assert worst_of(states) is worst_of(reversed(states))
    assert all(worst_of(states).severity >= s.severity for s in states)


def test_alive_is_a_healthy_status_with_no_components_that_round_trips() -> None:
    live = HealthStatus.alive("market-data-store", version="1.2.3", ts=T0)
    assert (live.state, live.components, live.http_status) == (H, (), 200)
    assert HealthStatus.model_validate_json(live.model_dump_json()) == live

"""Admin routes: an empty token never opens them; what callers send cannot break the audit."""

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from market_data_core.ratelimit import AuditedRateLimiter
from market_data_core.testing import FakeClock
from market_data_store.service import create_app
from market_data_store.settings import StoreSettings

from .conftest import ADMIN_TOKEN  # noqa: TID252 - test helpers


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_admin_token_means_the_admin_routes_are_off(
    settings: StoreSettings, monkeypatch: pytest.MonkeyPatch, empty: str
) -> None:
    monkeypatch.setenv("MDS_ADMIN_TOKEN", empty)
    from_env = StoreSettings(database_url=settings.database_url)
    assert from_env.admin_token is None
    off = settings.model_copy(update={"admin_token": from_env.admin_token})
    with TestClient(create_app(off)) as client:
        for header in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer  "}):
            assert client.get("/v1/admin/schema-version", headers=header).status_code == 404
            assert client.post("/v1/admin/migrate", headers=header).status_code == 404


def test_a_short_admin_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as excinfo:
        StoreSettings(admin_token=SecretStr("short-tok"))
    assert "at least 16 characters" in str(excinfo.value)
    assert "short-tok" not in str(excinfo.value)


def test_what_callers_send_is_cut_to_fit_the_audit_record(client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    odd = {"X-Request-Id": "r" * 300}
    assert client.get("/v1/admin/schema-version", headers=odd).status_code == 401
    ok = client.get("/v1/admin/schema-version", headers=auth | odd)
    assert ok.status_code == 200
    audit = client.get("/v1/admin/audit", headers=auth).json()
    ids = [entry["request_id"] for entry in audit if entry["request_id"]]
    assert ids
    assert all(len(i) == 128 for i in ids)
    assert {e["action"] for e in audit} >= {"GET /v1/admin/schema-version"}


def test_a_flood_of_bad_tokens_adds_a_bounded_number_of_audit_rows(
    settings: StoreSettings,
) -> None:
    """500 calls with a wrong token from one address: the first burst answers 401, then
    429 with Retry-After; one audit row per burst plus one for the first refusal past it
    (the rest counted), not 500. Another address and the admin are not affected; the
    address's next audited call reports what was left out."""
    settings = settings.model_copy(
        update={"admin_refusals_per_minute": 6, "admin_refusals_burst": 3}
    )
    app = create_app(settings)
    clock = FakeClock()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    bad = {"Authorization": "Bearer not-the-admin-token"}
    with TestClient(app, client=("10.0.0.1", 4000)) as flood:
        app.state.service.refusals = AuditedRateLimiter(6, burst=3, clock=clock)
        answers = [flood.get("/v1/admin/schema-version", headers=bad) for _ in range(500)]
        assert [a.status_code for a in answers[:3]] == [401] * 3
        assert {a.status_code for a in answers[3:]} == {429}
        assert int(answers[3].headers["Retry-After"]) == 10
        other = TestClient(app, client=("10.0.0.2", 4000))
        assert other.get("/v1/admin/schema-version", headers=bad).status_code == 401
        assert flood.get("/v1/admin/schema-version", headers=auth).status_code == 200
        clock.now += 10  # a token back: the next refusal is audited with the count
        assert flood.get("/v1/admin/schema-version", headers=bad).status_code == 401
        audit = flood.get("/v1/admin/audit", headers=auth, params={"limit": 1000}).json()
        metrics = flood.get("/metrics").text
    denied = [e for e in audit if e["result"] == "denied"]
    assert len(denied) == 3 + 1 + 1 + 1  # the burst, the first 429, the other address, the last
    assert denied[0]["details"].get("suppressed") == 496  # newest first
    assert "mds_audit_suppressed_total 496.0" in metrics

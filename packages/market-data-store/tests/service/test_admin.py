"""Admin routes: an empty token never opens them; what callers send cannot break the audit."""

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

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

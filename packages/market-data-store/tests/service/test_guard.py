"""The request guard: body limits on every route, and Allow on OPTIONS and 405."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from market_data_store.settings import StoreSettings

from .conftest import ADMIN_TOKEN  # noqa: TID252 - test helpers

JOB = {"job_name": "big", "provider": "replay"}


def test_a_large_body_on_a_route_without_auth_is_413(client: TestClient) -> None:
    """A 2 MB job start (no auth needed) is refused before it is read or parsed."""
    padding = "x" * (2 * 2**20)
    response = client.post("/v1/jobs", json=JOB | {"config": {"padding": padding}})
    assert response.status_code == 413
    assert "exceeds 1048576 bytes" in response.json()["detail"]
    assert client.get("/v1/jobs").json() == []
    assert client.post("/v1/jobs", json=JOB).status_code == 201


def test_a_streamed_body_without_a_length_is_counted(
    client: TestClient, settings: StoreSettings
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"job_name": "big", "provider": "replay", "config": {"p": "'
        for _ in range(40):
            yield b"y" * 65_536
        yield b'"}}'

    response = client.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert client.get("/v1/jobs").json() == []


def test_ingest_routes_take_their_own_larger_limit(client: TestClient) -> None:
    """max_body_bytes (64 KiB here) applies to ingest, max_request_bytes to the rest."""
    body = b"[" + b" " * (70 * 1024) + b"]"
    response = client.post("/v1/bars", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "exceeds 65536 bytes" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/bars", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("/v1/trades", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("/v1/jobs", {"GET", "HEAD", "OPTIONS", "POST"}),
        ("/healthz", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_options_answers_allow_with_every_method_of_the_path(
    client: TestClient, path: str, allowed: set[str]
) -> None:
    response = client.options(path)
    assert response.status_code == 204
    assert set(response.headers["allow"].split(", ")) == allowed
    wrong = client.delete(path)
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == allowed


def test_options_of_an_unknown_path_is_404(client: TestClient) -> None:
    assert client.options("/v1/nothing-here").status_code == 404


def test_admin_paths_answer_allow_too(client: TestClient) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = client.get("/v1/admin/migrate", headers=headers)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"OPTIONS", "POST"}

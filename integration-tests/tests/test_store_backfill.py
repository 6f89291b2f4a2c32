"""The store's admin route starts a backfill: a pipeline run by `mdp` in a child process,
writing through the service's own ingest, recorded as a job run and audited."""

import time
from pathlib import Path

import httpx
import pytest

from market_data_core.testing.servers import scaled
from market_data_store.testing import StoreService

TOKEN = "backfill-admin-token-93f1"
PIPELINE = {
    "mode": "classic",
    "source": {
        "type": "synthetic",
        "params": {"kind": "trades", "symbols": 4, "seed": 9, "duration": "30m", "count": 20_000},
    },
    "operators": [{"type": "resample_ohlc", "params": {"timeframe": "1m"}}],
    "sink": {"type": "store"},
}


@pytest.fixture
def service(tmp_path: Path):
    with StoreService(tmp_path, env={"MDS_ADMIN_TOKEN": TOKEN}) as running:
        yield running


def _wait(client: httpx.Client, run_id: str) -> dict:
    limit = scaled(60)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        run = client.get(f"/v1/jobs/{run_id}").json()
        if run["status"] != "running":
            return run
        time.sleep(0.1)
    raise AssertionError(f"backfill {run_id} still running after {limit:.0f} s")


def test_a_backfill_runs_to_completion_and_is_recorded(service: StoreService) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=service.url, timeout=30) as client:
        started = client.post(
            "/v1/admin/backfills",
            json={"name": "synthetic-day", "pipeline": PIPELINE},
            headers=auth,
        )
        assert started.status_code == 202, started.text
        run = started.json()
        assert run["mode"] == "backfill"
        assert run["provider"] == "synthetic"
        assert started.headers["location"] == f"/v1/jobs/{run['id']}"
        done = _wait(client, run["id"])
        assert done["status"] == "succeeded", done["error"]
        assert done["rows_written"] == 4 * 30  # 4 symbols x 30 one-minute bars
        bars = client.get(
            "/v1/bars",
            params={
                "symbol": "SYM000",
                "timeframe": "1m",
                "start": "2024-01-01T00:00:00Z",
                "end": "2025-01-01T00:00:00Z",
            },
        ).json()
        assert len(bars["items"]) == 30
        audit = client.get("/v1/admin/audit", headers=auth).json()
        assert any(a["action"].endswith("/backfills") and a["result"] == "allowed" for a in audit)
        assert TOKEN not in str(audit)


def test_an_invalid_pipeline_is_a_422_naming_the_problem(service: StoreService) -> None:
    bad = {**PIPELINE, "operators": [{"type": "resample_ohlc", "params": {"timeframe": "7m"}}]}
    with httpx.Client(base_url=service.url, timeout=30) as client:
        answer = client.post(
            "/v1/admin/backfills",
            json={"name": "bad", "pipeline": bad},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.status_code == 422
        assert "op1" in answer.text
        assert "timeframe" in answer.text
        assert client.get("/v1/jobs").json() == []  # nothing was started


def test_backfills_need_the_admin_token(service: StoreService) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        answer = client.post("/v1/admin/backfills", json={"name": "x", "pipeline": PIPELINE})
        assert answer.status_code == 401

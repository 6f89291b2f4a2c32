"""Job runs on a real SQLite store: tracker semantics and the HTTP routes."""

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from fastapi.testclient import TestClient
from pydantic import SecretStr

from market_data_core.testing import T0
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import StoreConfigurationError
from market_data_store.jobs import JobRunTracker, config_fingerprint
from market_data_store.migrate import upgrade
from market_data_store.service import create_app
from market_data_store.settings import StoreSettings


@pytest_asyncio.fixture
async def tracker(tmp_path: Path) -> AsyncIterator[JobRunTracker]:
    url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'jobs.db'}")
    await upgrade(url)
    backend = SqliteBackend(url)
    await backend.open()
    yield JobRunTracker(backend)
    await backend.close()


@pytest.mark.asyncio
async def test_run_lifecycle(tracker: JobRunTracker) -> None:
    run = await tracker.start(
        "replay-btc",
        provider="replay",
        mode="backfill",
        symbols=["BTC/USDT"],
        config={"b": 1, "a": 2},
    )
    assert run.config_fingerprint == config_fingerprint({"a": 2, "b": 1})
    await tracker.heartbeat(
        run.id, rows_written=100, min_ts=T0 + timedelta(hours=1), max_ts=T0 + timedelta(hours=2)
    )
    run = await tracker.heartbeat(
        run.id, rows_written=50, rows_failed=2, min_ts=T0, max_ts=T0 + timedelta(hours=1)
    )
    assert (run.rows_written, run.rows_failed) == (150, 2)
    assert (run.min_ts, run.max_ts) == (T0, T0 + timedelta(hours=2))
    done = await tracker.complete(run.id)
    assert done.status == "succeeded"
    assert done.finished_at is not None
    assert await tracker.backend.get_job_run(run.id) == done
    with pytest.raises(StoreConfigurationError, match="already succeeded"):
        await tracker.heartbeat(run.id, rows_written=1)
    with pytest.raises(StoreConfigurationError, match="no job run"):
        await tracker.complete("nope")


@pytest.mark.asyncio
async def test_stuck_and_recent(tracker: JobRunTracker) -> None:
    old = await tracker.start("a", provider="synthetic")
    fresh = await tracker.start("b", provider="synthetic")
    finished = await tracker.start("a", provider="synthetic")
    await tracker.complete(finished.id, status="failed", error="boom")
    stale = old.model_copy(update={"heartbeat_at": old.heartbeat_at - timedelta(minutes=10)})
    await tracker.backend.save_job_run(stale)
    stuck = await tracker.stuck(timedelta(minutes=5))
    assert [r.id for r in stuck] == [old.id]
    recent = await tracker.backend.recent_job_runs(10)
    assert {r.id for r in recent} == {old.id, fresh.id, finished.id}
    assert [r.id for r in await tracker.backend.recent_job_runs(10, job_name="b")] == [fresh.id]


def test_job_routes(tmp_path: Path) -> None:
    settings = StoreSettings(
        database_url=SecretStr(f"sqlite:///{tmp_path / 's.db'}"),
        dead_letter_path=str(tmp_path / "d"),
    )
    with TestClient(create_app(settings)) as client:
        started = client.post(
            "/v1/jobs",
            json={"job_name": "quickstart", "provider": "synthetic", "symbols": ["AAPL"]},
        )
        assert started.status_code == 201
        run_id = started.json()["id"]
        beat = client.post(f"/v1/jobs/{run_id}/heartbeat", json={"rows_written": 10})
        assert beat.json()["rows_written"] == 10
        assert (
            client.post(f"/v1/jobs/{run_id}/complete", json={"status": "running"}).status_code
            == 422
        )
        assert client.post(f"/v1/jobs/{run_id}/complete", json={}).json()["status"] == "succeeded"
        assert client.post(f"/v1/jobs/{run_id}/complete", json={}).status_code == 409
        assert client.get(f"/v1/jobs/{run_id}").json()["rows_written"] == 10
        assert client.get("/v1/jobs/missing").status_code == 404
        assert [r["id"] for r in client.get("/v1/jobs").json()] == [run_id]
        assert client.get("/v1/jobs/stuck").json() == []

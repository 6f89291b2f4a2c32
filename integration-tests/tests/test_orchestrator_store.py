"""The orchestrator follows the store's health: PostgreSQL stops, the store's /readyz turns
503, the orchestrator pauses the job that writes to it; PostgreSQL returns, the job
resumes; the job completes with every bar in the database. Prints the reaction times."""

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import until
from pydantic import SecretStr

from market_data_orchestrator.deployment import load_deployment
from market_data_orchestrator.jobs import JobState
from market_data_orchestrator.orchestrator import STORE_HEALTH, Orchestrator
from market_data_pipeline import UnifiedRuntime, UnifiedRuntimeSettings
from market_data_store.settings import StoreSettings
from market_data_store.store import Store
from market_data_store.testing import PostgresServer, StoreService

JOB = """\
name: writer
nodes:
  - {{id: trades, type: synthetic, params: {{symbols: 3, seed: 5, count: 60000, batch_size: 1000,
      rate: 4000, duration: 1h}}}}
  - {{id: bars, type: resample_ohlc, params: {{timeframe: 1m, source: writer}}}}
  - {{id: store, type: store, params: {{url: "{url}"}}}}
edges: [trades -> bars, bars -> store]
"""


async def _expected_bars(tmp_path: Path) -> int:
    """The same deterministic job run in process into SQLite: how many bars it makes."""
    settings = UnifiedRuntimeSettings.load(
        None, database_url=SecretStr(f"sqlite:///{tmp_path}/x.db")
    )
    graph = {
        "name": "writer",
        "nodes": [
            {
                "id": "trades",
                "type": "synthetic",
                "params": {
                    "symbols": 3,
                    "seed": 5,
                    "count": 60000,
                    "batch_size": 1000,
                    "duration": "1h",
                },
            },
            {
                "id": "bars",
                "type": "resample_ohlc",
                "params": {"timeframe": "1m", "source": "writer"},
            },
            {"id": "store", "type": "store"},
        ],
        "edges": ["trades -> bars", "bars -> store"],
    }
    async with UnifiedRuntime(settings) as rt:
        await rt.run(graph)
        return rt.store_report["tables"]["bars"][1]


@pytest.mark.asyncio
async def test_jobs_pause_while_the_store_is_unhealthy_and_resume_after(tmp_path: Path) -> None:
    with PostgresServer(password="orch-pw-77e1") as postgres:
        service = StoreService(
            tmp_path,
            database_url=postgres.dsn,
            env={"MDS_HEALTH_INTERVAL": "0.2"},
        )
        with service:
            (tmp_path / "job.yaml").write_text(JOB.format(url=service.url))
            (tmp_path / "deployment.yaml").write_text(
                "jobs:\n  - {name: writer, config: job.yaml}\n"
                f"store: {{url: '{service.url}', poll_interval: 0.2, timeout: 1.0,"
                " unhealthy_after: 2, healthy_after: 2}\n"
                f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
            )
            async with Orchestrator(load_deployment(tmp_path / "deployment.yaml")) as orch:
                job = lambda: orch.supervisor.job("writer")  # noqa: E731
                await until(lambda: job().state is JobState.RUNNING, "the job to run")
                await asyncio.sleep(1.0)  # let it write for a while
                stopped_at = time.monotonic()
                postgres.stop()
                await until(lambda: job().paused_by == STORE_HEALTH, "the pause")
                to_pause = time.monotonic() - stopped_at
                assert job().state is JobState.PAUSED
                await asyncio.sleep(1.0)
                started_at = time.monotonic()
                postgres.start()
                await until(lambda: job().paused_by is None, "the resume")
                to_resume = time.monotonic() - started_at
                await until(lambda: job().state is JobState.COMPLETED, "completion", limit=120)
                audit = await orch.audit.read(50)
        async with Store(StoreSettings(database_url=SecretStr(postgres.dsn))) as store:
            stored = await store.backend.count("bars")
    expected = await _expected_bars(tmp_path)
    assert stored == expected, f"{stored} bars stored, {expected} expected"
    actions = [(a.actor, a.action, a.target) for a in audit]
    assert (STORE_HEALTH, "pause", "writer") in actions
    assert (STORE_HEALTH, "resume", "writer") in actions
    print(
        f"\nstore unhealthy -> job paused: {to_pause:.2f} s after PostgreSQL stopped;"
        f" healthy -> resumed: {to_resume:.2f} s after it returned; {stored} bars, none lost"
        f" ({datetime.now(UTC):%H:%M:%S})"
    )

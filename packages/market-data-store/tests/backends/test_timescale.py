"""TimescaleDB is feature-detected: plain PostgreSQL works unchanged and says so; the plan
that would run with it is idempotent and its settings cannot inject SQL.

No TimescaleDB build is installable on this project's machines, so the path with the
extension present is covered only by the plan's statements, not by a server."""

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from market_data_store.dsn import DatabaseUrl
from market_data_store.settings import StoreSettings
from market_data_store.store import Store
from market_data_store.testing import PostgresServer
from market_data_store.timescale import HYPERTABLES, TimescalePlan


@pytest.mark.asyncio
async def test_plain_postgres_is_detected_and_left_alone(
    postgres_server: PostgresServer, pg_url: DatabaseUrl, tmp_path: Path
) -> None:
    settings = StoreSettings(
        database_url=SecretStr(postgres_server.dsn_for(str(pg_url.sqlalchemy_url().database))),
        dead_letter_path=str(tmp_path / "dlq.ndjson"),
        health_interval=0.05,
    )
    async with Store(settings) as store:
        assert store.timescale is not None
        assert store.timescale.present is False
        assert store.timescale.hypertables == []
        health = await store.health()
        database = next(c for c in health.components if c.name == "database")
        assert database.details["timescaledb"] == "absent"
        await store.migrate()  # runs the detection again, still a no-op
        assert store.timescale.present is False


def test_the_plan_is_idempotent_and_covers_every_time_series_table() -> None:
    plan = TimescalePlan(chunk_interval="12 hours", compress_after="3 days", retention="90 days")
    sql = plan.statements()
    for table, column in HYPERTABLES.items():
        assert any(f"create_hypertable('{table}', '{column}'" in s for s in sql)
        assert any(f"add_compression_policy('{table}', INTERVAL '3 days'" in s for s in sql)
        assert any(f"add_retention_policy('{table}', INTERVAL '90 days'" in s for s in sql)
    assert all("if_not_exists => TRUE" in s for s in sql if s.startswith("SELECT"))
    assert all("INTERVAL '12 hours'" in s for s in sql if "create_hypertable" in s)
    bare = TimescalePlan(compress_after=None).statements()
    assert len(bare) == len(HYPERTABLES)  # hypertables only: no compression, no retention


@pytest.mark.parametrize(
    "value", ["1 day'; DROP TABLE bars; --", "7", "one day", "0 days", "1 fortnight"]
)
def test_interval_settings_cannot_inject_sql(value: str) -> None:
    with pytest.raises(ValidationError, match="timescale_retention"):
        StoreSettings(timescale_retention=value)

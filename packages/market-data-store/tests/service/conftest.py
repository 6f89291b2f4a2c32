import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from market_data_store.backends.base import Record, WriteResult
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.service import create_app
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

ADMIN_TOKEN = "canary-admin-token-3f9c"


class GatedBackend(SqliteBackend):
    """The real SQLite backend whose writes wait while the gate is closed (to fill the queue)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, records: Sequence[Record]) -> WriteResult:
        await self.gate.wait()
        return await super().write(records)


@pytest.fixture
def settings(tmp_path: Path) -> StoreSettings:
    return StoreSettings(
        database_url=SecretStr(f"sqlite:///{tmp_path / 'store.db'}"),
        dead_letter_path=str(tmp_path / "dlq.ndjson"),
        admin_token=SecretStr(ADMIN_TOKEN),
        flush_interval=0.02,
        heartbeat_interval=0.5,
        health_interval=0.05,
        max_batch=100,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def client(settings: StoreSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def make_gated(settings: StoreSettings) -> tuple[Store, GatedBackend]:
    backend = GatedBackend(settings.database)
    return Store(settings, backend=backend), backend

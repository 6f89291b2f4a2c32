"""A fresh, migrated database per test on the session's PostgreSQL (the plugin's
``postgres_server``, see ``market_data_core.testing.plugin``), and backends open on it.

The server's user has a password, so every test goes through real password
authentication and can check that the password never leaks into errors.
"""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from market_data_store.backends.postgres import PostgresBackend
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer

MIGRATED = "md_migrated_template"
"""A database of ``postgres_server`` migrated to head once per session: ``pg_url`` copies it."""


@pytest.fixture(scope="session")
def migrated_template(postgres_server: PostgresServer) -> str:
    """The name of a database migrated to head, the template of every ``pg_url``."""
    postgres_server.create_database_sync(MIGRATED)
    asyncio.run(upgrade(postgres_server.url_for(MIGRATED)))
    return MIGRATED


@pytest_asyncio.fixture
async def pg_url(
    postgres_server: PostgresServer, migrated_template: str
) -> AsyncIterator[DatabaseUrl]:
    """A new database migrated to head (a copy of ``migrated_template``), dropped after
    the test."""
    name = postgres_server.create_database_sync(template=migrated_template)
    yield postgres_server.url_for(name)
    await postgres_server.drop_database(name)


@pytest_asyncio.fixture(params=[True, False], ids=["fast-append", "upsert-only"])
async def pg_backend(
    request: pytest.FixtureRequest, pg_url: DatabaseUrl
) -> AsyncIterator[PostgresBackend]:
    """An open backend on a fresh database, with and without the append fast path (both
    paths must give the same results)."""
    backend = PostgresBackend(pg_url, fast_append=request.param)
    await backend.open()
    yield backend
    await backend.close()


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def any_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """An open backend on a fresh database migrated to head, SQLite then PostgreSQL (its
    ``url`` says which)."""
    if request.param == "sqlite":
        url = DatabaseUrl.parse(f"sqlite:///{tmp_path / 'store.db'}")
        await upgrade(url)
        opened: Any = SqliteBackend(url)
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = await server.create_database()
        await upgrade(url)
        opened = PostgresBackend(url)
    await opened.open()
    yield opened
    await opened.close()

"""A real PostgreSQL server for the backend tests (started once per session from the local
binaries, see ``market_data_store.testing``) and a fresh, migrated database per test.

The server's user has a password, so every test goes through real password
authentication and can check that the password never leaks into errors.
"""

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from market_data_store.backends.postgres import PostgresBackend
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer(password="pg-Test-s3cret-9f2c") as server:
        yield server


@pytest_asyncio.fixture
async def pg_url(postgres_server: PostgresServer) -> AsyncIterator[DatabaseUrl]:
    """A new database migrated to head, dropped after the test."""
    url = await postgres_server.create_database()
    await upgrade(url)
    yield url
    await postgres_server.drop_database(str(url.sqlalchemy_url().database))


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

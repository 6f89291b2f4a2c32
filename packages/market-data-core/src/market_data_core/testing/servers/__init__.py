"""Real servers for tests, started from local binaries on 127.0.0.1 (no Docker, no mocks):
``RedisServer`` and ``PostgresServer``, plus what they share (``MissingBinaryError`` when a
binary is not installed, ``free_port``, ``scaled`` deadlines, ``await_healthy``).

The pytest plugin ``market_data_core.testing.plugin`` hands them to tests as fixtures.
"""

from market_data_core.testing.servers.postgres_server import (
    PostgresDatabase,
    PostgresServer,
    find_pg_bin,
)
from market_data_core.testing.servers.process import (
    MissingBinaryError,
    await_healthy,
    free_port,
    scaled,
)
from market_data_core.testing.servers.redis_server import RedisServer, find_redis_server

__all__ = [
    "MissingBinaryError",
    "PostgresDatabase",
    "PostgresServer",
    "RedisServer",
    "await_healthy",
    "find_pg_bin",
    "find_redis_server",
    "free_port",
    "scaled",
]

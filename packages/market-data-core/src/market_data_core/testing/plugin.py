"""The pytest plugin of the platform's test suites (registered as ``pytest11``, so every
environment with market-data-core installed has these fixtures):

- ``redis_server``: ONE ``redis-server`` per session (per xdist worker), emptied
  (``FLUSHALL``) before each test that uses it; never stop, kill or freeze it.
- ``private_redis_server``: a ``redis-server`` of the test's own, for tests that stop, kill,
  freeze, restart or reconfigure it.
- ``postgres_server``: ONE PostgreSQL per session (per xdist worker), with a password so that
  every connection goes through real authentication; never stop or kill it.
- ``postgres_database``: a fresh, empty database of ``postgres_server`` for one test (copied
  from ``template0``), dropped after it.
- ``private_postgres_server``: a PostgreSQL of the test's own, for tests that stop or crash it.
- ``fake_clock``: a ``FakeClock`` that moves only when the test says so.

A missing binary fails the test with ``MissingBinaryError`` naming what to install; it is
never a skip. Every server is stopped and its processes reaped when its scope ends.

On a machine busier than its cores (see ``scaled``), Hypothesis runs with the profile
``market-data-loaded``: no per-example deadline and no health check on the speed of input
generation, two timing checks that fail for the load, not for the code. Every example is
still run and checked.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

from market_data_core.testing import FakeClock
from market_data_core.testing.servers import (
    PostgresDatabase,
    PostgresServer,
    RedisServer,
    scaled,
)

__all__ = [
    "fake_clock",
    "postgres_database",
    "postgres_server",
    "private_postgres_server",
    "private_redis_server",
    "redis_server",
]


LOADED_PROFILE = "market-data-loaded"


def pytest_configure(config: pytest.Config) -> None:
    """A pytest-xdist worker sees the terminal size of a plain run; Hypothesis runs without
    timing checks when the machine is busier than its cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _terminal_size_of_a_plain_run()
    if scaled(1.0) <= 1.0:
        return
    with contextlib.suppress(ImportError):  # hypothesis is a test dependency, not core's
        from hypothesis import HealthCheck, settings  # noqa: PLC0415

        settings.register_profile(
            LOADED_PROFILE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        )
        settings.load_profile(LOADED_PROFILE)


def _terminal_size_of_a_plain_run() -> None:
    """Drop the ``COLUMNS``/``LINES`` (80x24) a worker is started with but a plain pytest run
    does not have: tests of terminal output would lay it out for 80 columns whatever they
    ask for."""
    if os.environ.get("COLUMNS") == "80" and os.environ.get("LINES") == "24":
        os.environ.pop("COLUMNS")
        os.environ.pop("LINES")


def _password() -> str:
    return f"md-test-{secrets.token_hex(8)}"


@pytest.fixture(scope="session")
def _session_redis_server() -> Iterator[RedisServer]:
    """The session's one ``redis-server``, behind ``redis_server``."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server(_session_redis_server: RedisServer) -> RedisServer:
    """The session's ``redis-server``, empty at the start of the test."""
    _session_redis_server.start()  # back up if an earlier test broke the rule and stopped it
    _session_redis_server.flush()
    return _session_redis_server


@pytest.fixture
def private_redis_server() -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own: stop, kill, freeze or restart it at will."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's one PostgreSQL (password authentication); share it, never stop it."""
    with PostgresServer(password=_password()) as server:
        yield server


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, empty database on the session's PostgreSQL, dropped after the test."""
    postgres_server.start()  # back up if an earlier test broke the rule and stopped it
    name = postgres_server.create_database_sync()
    yield PostgresDatabase(postgres_server, name)
    postgres_server.drop_database_sync(name)


@pytest.fixture
def private_postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own (password authentication): stop or crash it at will."""
    with PostgresServer(password=_password()) as server:
        yield server


@pytest.fixture
def fake_clock() -> FakeClock:
    """Monotonic seconds that move only when the test says so (``advance``, ``now =``)."""
    return FakeClock()

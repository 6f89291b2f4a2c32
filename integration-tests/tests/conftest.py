from collections.abc import Iterator

import pytest

from market_data_core.testing.servers import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 for one test (fails, naming what to install, if
    the binary is missing)."""
    with RedisServer() as server:
        yield server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: builds wheels and virtualenvs or starts a platform of servers (minutes on a"
        " loaded machine); -m 'not slow' leaves them out",
    )

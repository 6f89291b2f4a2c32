import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _state_dir_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`mdp run` children keep their redis_stream state files (MDP_STATE_DIR) in a
    directory of this session, never in the working directory where a later run's
    servers would meet them (for fixtures wider than a test)."""
    before = os.environ.get("MDP_STATE_DIR")
    os.environ["MDP_STATE_DIR"] = str(tmp_path_factory.mktemp("mdp-state"))
    yield
    if before is None:
        os.environ.pop("MDP_STATE_DIR", None)
    else:
        os.environ["MDP_STATE_DIR"] = before


@pytest.fixture(autouse=True)
def _state_dir_of_the_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One MDP_STATE_DIR per test: no redis_stream state file outlives its Redis."""
    monkeypatch.setenv("MDP_STATE_DIR", str(tmp_path / "mdp-state"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: builds wheels and virtualenvs or starts a platform of servers (minutes on a"
        " loaded machine); -m 'not slow' leaves them out",
    )

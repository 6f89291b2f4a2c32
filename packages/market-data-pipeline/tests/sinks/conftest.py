import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from market_data_core.testing.servers import RedisServer, free_port
from market_data_pipeline.components import Context, NodeStats
from market_data_pipeline.runtime import FullRate


@pytest.fixture
def make_context() -> Callable[..., Context]:
    def make(node_id: str = "sink", *, services: dict[str, object] | None = None) -> Context:
        return Context(
            node_id=node_id,
            job="test",
            stats=NodeStats(),
            rate=FullRate(),
            stopping=asyncio.Event(),
            services=dict(services or {}),
        )

    return make


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1 (fails, naming what to install, if it is missing)."""
    with RedisServer() as server:
        yield server


class StoreService:
    """``mds serve`` (uvicorn, SQLite) in a child process."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = f"sqlite:///{tmp_path / 'service.db'}"
        self.env = os.environ | {
            "MDS_DATABASE_URL": self.database,
            "MDS_DEAD_LETTER_PATH": str(tmp_path / "service.dlq.ndjson"),
            "MDS_PORT": str(self.port),
            "MDS_FLUSH_INTERVAL": "0.02",
            "MDS_LOG_JSON": "true",
        }
        self.log = tmp_path / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "market_data_store.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"the store service did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def store_service(tmp_path: Path) -> Iterator[StoreService]:
    service = StoreService(tmp_path)
    service.start()
    yield service
    service.stop()

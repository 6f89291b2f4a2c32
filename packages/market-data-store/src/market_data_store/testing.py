"""Test support of the store: ``StoreService`` runs ``mds serve`` in a child process.

``PostgresServer`` (a real PostgreSQL for tests) lives in ``market_data_core.testing.servers``
and is re-exported here, where earlier releases had it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from market_data_core.testing.servers import (
    MissingBinaryError,
    PostgresDatabase,
    PostgresServer,
    await_healthy,
    find_pg_bin,
    free_port,
)

__all__ = [
    "MissingBinaryError",
    "PostgresDatabase",
    "PostgresServer",
    "StoreService",
    "find_pg_bin",
]


class StoreService:
    """``mds serve`` (uvicorn) in a child process on a free 127.0.0.1 port, for tests.

    SQLite in ``directory`` unless ``database_url`` is given; ``env`` adds ``MDS_*``
    settings. A context manager: ``with StoreService(tmp_path) as service: service.url``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = database_url or f"sqlite:///{directory / 'service.db'}"
        self.env = {
            **os.environ,
            "MDS_DATABASE_URL": self.database,
            "MDS_DEAD_LETTER_PATH": str(directory / "service.dlq.ndjson"),
            "MDS_PORT": str(self.port),
            "MDS_FLUSH_INTERVAL": "0.02",
            "MDS_LOG_JSON": "true",
            **(env or {}),
        }
        self.log = directory / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start ``mds serve`` and wait until ``/healthz`` answers (``timeout`` is
        ``scaled``); a service that does not come up is killed and reaped, then reported."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "market_data_store.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await_healthy(
            self.process, f"{self.url}/healthz", timeout, name="the store service",
            log=self.log.read_text, stop=self.kill,
        )  # fmt: skip

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then wait up to ``timeout`` seconds for the drain and the exit (SIGKILL
        after that); the exit code (``None`` when it had to be killed or never ran)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                return None
        return self.process.returncode

    def kill(self) -> None:
        """Crash the service: SIGKILL, no drain (what it acknowledged must already be in
        the database). ``start()`` again serves on the same port."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

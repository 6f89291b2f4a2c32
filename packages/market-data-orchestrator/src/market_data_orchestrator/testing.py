"""What tests of and around the orchestrator need: ``mdo serve`` in a child process.

    with OrchestratorService(Path("deployment.yaml")) as orchestrator:
        httpx.get(f"{orchestrator.url}/readyz")

The child serves on 127.0.0.1 and a free port (``--host`` / ``--port`` override the
deployment's ``service``); its stdout and stderr go to ``log`` (next to the deployment
file by default), which the errors of ``start`` quote.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

from market_data_core.testing.servers import await_healthy, free_port

__all__ = ["OrchestratorService"]

_LOG_TAIL = 3000


class OrchestratorService:
    """``mdo serve DEPLOYMENT`` on ``127.0.0.1:port``; a context manager."""

    def __init__(
        self, deployment: Path, *, port: int | None = None, log: Path | None = None
    ) -> None:
        self.deployment = deployment
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or deployment.with_name(f"{deployment.stem}.orchestrator.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the child and wait until ``/healthz`` answers 200."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [
                    sys.executable,
                    "-m",
                    "market_data_orchestrator.cli",
                    "serve",
                    str(self.deployment),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.deployment.parent,
            )
        await_healthy(
            self.process, f"{self.url}/healthz", timeout, name="mdo serve",
            log=self.log_tail, stop=self.stop,
        )  # fmt: skip

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the orchestrator stops its jobs first), SIGKILL after ``timeout``."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, size: int = _LOG_TAIL) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

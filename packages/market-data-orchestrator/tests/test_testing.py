import socket
from pathlib import Path

import httpx
import pytest

from market_data_orchestrator.testing import OrchestratorService


def test_serves_on_a_free_loopback_port_and_stops(tmp_path: Path) -> None:
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text(f"jobs: []\naudit: {{path: {tmp_path / 'audit.jsonl'}}}\n")
    with OrchestratorService(deployment) as orchestrator:
        assert orchestrator.url == f"http://127.0.0.1:{orchestrator.port}"
        assert httpx.get(f"{orchestrator.url}/readyz").json()["state"] == "healthy"
        # mdo serve runs the guarded protocol: an over-long request line gets an answer
        with socket.create_connection(("127.0.0.1", orchestrator.port), timeout=30) as raw:
            raw.sendall(b"GET /healthz?" + b"a" * 1_000_000 + b" HTTP/1.1\r\n\r\n")
            assert raw.recv(64).startswith(b"HTTP/1.1 414 ")
    assert orchestrator.process is not None
    assert orchestrator.process.returncode is not None


def test_a_deployment_it_cannot_serve_fails_with_the_log(tmp_path: Path) -> None:
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text("jobs: [{name: x}]\n")  # no config
    with pytest.raises(RuntimeError, match=r"mdo serve exited with 2:(.|\n)*config"):
        OrchestratorService(deployment).start()


class _TimeLimit(BaseException):
    """What a test's time limit (pytest-timeout) or ^C raises inside a wait."""


def test_a_start_interrupted_by_a_time_limit_leaves_no_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = tmp_path / "deployment.yaml"
    deployment.write_text(f"jobs: []\naudit: {{path: {tmp_path / 'audit.jsonl'}}}\n")
    service = OrchestratorService(deployment)

    def interrupted(url: str, **_: object) -> httpx.Response:
        raise _TimeLimit

    monkeypatch.setattr(httpx, "get", interrupted)
    with pytest.raises(_TimeLimit):
        service.start()
    assert service.process is not None
    assert service.process.poll() is not None  # stopped and reaped

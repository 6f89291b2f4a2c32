"""``mdo serve`` as a real process, driven by the ``mdo`` commands an operator types."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from market_data_core.testing.servers import free_port, scaled
from market_data_orchestrator.cli import app
from market_data_orchestrator.security import hash_token

runner = CliRunner()
OPERATOR, ADMIN = "op-token-81c2", "admin-token-27d9"


@pytest.fixture
def served(serving: tuple[str, subprocess.Popen[bytes]]) -> str:
    return serving[0]


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``mdo serve`` running a paced job: its URL and process."""
    port = free_port()
    (tmp_path / "job.yaml").write_text(
        "name: paced\nnodes:\n"
        "  - {id: trades, type: synthetic, params: {count: 10000000, batch_size: 500, rate: 2000}}\n"
        "  - {id: sink, type: 'null'}\nedges: [trades -> sink]\n"
    )
    (tmp_path / "deployment.yaml").write_text(
        "jobs:\n  - {name: paced, config: job.yaml, writes_to_store: false}\n"
        "security:\n  tokens:\n"
        f"    - {{name: ops, role: operator, sha256: {hash_token(OPERATOR)}}}\n"
        f"    - {{name: root, role: admin, sha256: {hash_token(ADMIN)}}}\n"
        f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
        f"service: {{port: {port}}}\n"
    )
    log = (tmp_path / "mdo.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "market_data_orchestrator.cli", "serve",
         str(tmp_path / "deployment.yaml")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + scaled(60)
        while True:
            assert process.poll() is None, (tmp_path / "mdo.log").read_text()
            try:
                jobs = httpx.get(
                    f"{url}/v1/jobs", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=1
                ).json()
                if jobs[0]["state"] == "running":
                    break
            except (httpx.TransportError, KeyError, IndexError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "mdo.log").read_text()
            time.sleep(0.1)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(scaled(30))
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()


def _mdo(url: str, token: str | None, *args: str):
    env = {"MDO_URL": url, "COLUMNS": "200"}
    if token:
        env["MDO_TOKEN"] = token
    return runner.invoke(app, list(args), env=env)


def test_an_operator_pauses_and_resumes_and_the_admin_reads_the_audit(served: str) -> None:
    jobs = _mdo(served, OPERATOR, "jobs")
    assert jobs.exit_code == 0, jobs.output
    assert "paced" in jobs.output
    assert "running" in jobs.output
    paused = _mdo(served, OPERATOR, "pause", "paced")
    assert paused.exit_code == 0, paused.output
    assert "accepted" in paused.output
    assert "paused" in _mdo(served, OPERATOR, "jobs").output
    assert _mdo(served, OPERATOR, "resume", "paced").exit_code == 0
    scaled_up = _mdo(served, OPERATOR, "scale", "paced", "2")
    assert scaled_up.exit_code == 0, scaled_up.output
    assert "paced: 2 replicas" in scaled_up.output
    assert "2/2" in _wait_jobs(served, "2/2")
    assert _mdo(served, OPERATOR, "scale", "paced", "0").exit_code == 2  # refused before a call
    denied = _mdo(served, OPERATOR, "reload", "paced")
    assert denied.exit_code == 1
    assert "403" in denied.output
    assert _mdo(served, None, "jobs").exit_code == 1  # no token: 401
    audit = _mdo(served, ADMIN, "audit")
    assert audit.exit_code == 0, audit.output
    assert "ops" in audit.output
    assert "denied" in audit.output
    status = _mdo(served, None, "status")
    assert status.exit_code == 0, status.output
    assert "job:paced" in status.output
    # no feedback transport in this deployment: a row says so, and what to add
    assert "no feedback transport configured: add `feedback:`" in status.output


def test_a_forwarded_address_is_not_believed_without_a_trusted_proxy(served: str) -> None:
    """No proxy configured (``service.trusted_proxies``): a caller on 127.0.0.1 cannot pick
    the client address that audit records and the per-client 401 limit use."""
    forged = {"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer wrong-token-1234"}
    assert httpx.get(f"{served}/v1/jobs", headers=forged, timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {ADMIN}"}
    audit = httpx.get(f"{served}/v1/audit", headers=auth, timeout=10).json()
    denied = [a for a in audit if a["result"] == "denied"]
    assert denied, audit
    assert {a["details"]["client"] for a in denied} == {"127.0.0.1"}
    assert "203.0.113.9" not in json.dumps(audit)


def _wait_jobs(url: str, text: str) -> str:
    """``mdo jobs`` once it shows ``text`` (a replica that is starting)."""
    deadline = time.monotonic() + scaled(60)
    while text not in (output := _mdo(url, OPERATOR, "jobs").output):
        assert time.monotonic() < deadline, output
        time.sleep(0.2)
    return output


def test_state_changes_stream_as_server_sent_events(served: str) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.stream("GET", f"{served}/v1/events", headers=headers, timeout=30) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith(": connected")
        httpx.post(f"{served}/v1/jobs/paced/pause", headers=headers, timeout=30)
        next(line for line in lines if line == "event: state")
        data = next(lines)
    assert '"new": "paused"' in data or '"new":"paused"' in data
    httpx.post(f"{served}/v1/jobs/paced/resume", headers=headers, timeout=30)


def test_sigterm_ends_the_open_event_streams_and_the_process(
    serving: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """An operator's status page keeps /v1/events open; a stop must not wait for it (it
    would hold the drain of the jobs until the page closed)."""
    url, process = serving
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.stream("GET", f"{url}/v1/events", headers=headers, timeout=60) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith(": connected")
        process.send_signal(signal.SIGTERM)
        for _ in lines:  # the stream ends (no read timeout, no hang)
            pass
    process.wait(scaled(30))  # uvicorn exits by the signal it handled: -SIGTERM
    assert process.returncode in (0, -signal.SIGTERM)


def test_a_bad_deployment_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("jobs:\n  - {name: x, config: missing.yaml, replica: 2}\n")
    result = runner.invoke(app, ["serve", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output


def test_the_token_never_appears_in_help_or_flags() -> None:
    result = runner.invoke(app, ["pause", "--help"], env={"COLUMNS": "200"})
    assert "MDO_URL" in result.output
    assert "--token" not in result.output


def test_openapi_is_committed_and_current(tmp_path: Path) -> None:
    from market_data_orchestrator.cli import app
    from market_data_orchestrator.openapi import spec_text

    committed = Path(__file__).resolve().parents[3] / "docs/openapi/market-data-orchestrator.json"
    assert committed.read_text() == spec_text(), (
        "run: uv run mdo openapi -o docs/openapi/market-data-orchestrator.json"
    )
    result = CliRunner().invoke(app, ["openapi", "-o", str(tmp_path / "spec.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "spec.json").read_text() == spec_text()


def test_version_names_the_distribution() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"market-data-orchestrator {version('market-data-orchestrator')}\n"


HEAVY = ("fastapi", "starlette", "uvicorn", "httpx", "structlog", "prometheus_client", "yaml",
         "sqlalchemy", "asyncpg", "redis", "pyarrow", "market_data_core.bars", "market_data_store",
         "market_data_pipeline", "market_data_orchestrator.supervisor")  # fmt: skip


def test_help_and_version_import_no_service() -> None:
    # In a fresh interpreter, as `mdo --help` runs: the service loads only for a command.
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from market_data_orchestrator.cli import app\n"
        "for args in (['--help'], ['--version'], ['serve', '--help'], ['status', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert [m for m in HEAVY if m in loaded] == []
    assert "market_data_orchestrator.cli" in loaded


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["status"], ["jobs"], ["pause"], ["resume"], ["scale"], ["reload"],
     ["audit"], ["openapi"]],
)  # fmt: skip
def test_help_shows_a_flag_without_a_value(command: list[str]) -> None:
    # `--help <bool>` (Typer's Rich panels) reads as if the flag wanted a value; it takes none
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    flag = "--version" if not command else "--help"
    assert any(line.strip().split("  ")[0] == flag for line in result.output.splitlines())


def test_serve_on_a_busy_port_says_so_in_one_line_and_starts_no_job(tmp_path: Path) -> None:
    import socket

    (tmp_path / "job.yaml").write_text(
        "name: paced\nnodes:\n  - {id: trades, type: synthetic, params: {count: 10}}\n"
        "  - {id: sink, type: 'null'}\nedges: [trades -> sink]\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "deployment.yaml").write_text(
            "jobs:\n  - {name: paced, config: job.yaml, writes_to_store: false}\n"
            f"audit: {{path: {tmp_path / 'audit.jsonl'}}}\nservice: {{port: {port}}}\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "market_data_orchestrator.cli", "serve",
             str(tmp_path / "deployment.yaml")],
            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
            check=False,
        )  # fmt: skip
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port} is in use" in lines[0]
    assert "--port or service.port in" in lines[0]
    assert not (tmp_path / "audit.jsonl").exists()  # no job started, nothing audited


# -- what an operator sees in a terminal (issue 25, items 5 and 7) ------------------------------

AUDIT = [
    {"ts": "2026-12-07T13:24:23.117523+00:00", "actor": "ops", "role": "operator",
     "action": "POST /v1/jobs/{name}/reload", "target": "nightly-backfill-equities",
     "result": "denied",
     "reason": "role operator may not reload: it needs admin (the deployment's security.tokens)"},
    {"ts": "2026-12-07T13:24:21.000001Z", "actor": "root", "role": "admin",
     "action": "POST /v1/jobs/{name}/scale", "target": "paced", "result": "allowed",
     "reason": None},
]  # fmt: skip


def _table_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_audit_fits_80_columns_and_cuts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from market_data_orchestrator import cli

    monkeypatch.setattr(cli, "_call", lambda *args, **kwargs: AUDIT)
    terminal = {"COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1", "MDO_TOKEN": ADMIN}
    result = runner.invoke(app, ["audit"], env=terminal)
    assert result.exit_code == 0, result.output
    lines = _table_lines(result.stdout)
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert "…" not in result.stdout
    text = result.stdout
    for whole in ("2026-12-07T13:24:23.117523Z", "2026-12-07T13:24:21.000001Z",
                  "POST /v1/jobs/{name}/reload", "nightly-backfill-equities",
                  "POST /v1/jobs/{name}/scale", "by ops (operator)", "by root (admin)"):  # fmt: skip
        assert whole in text, (whole, text)
    reason = [line.split("│")[3].strip() for line in lines if line.count("│") == 4]
    words = " ".join(" ".join(reason).split())
    assert "role operator may not reload: it needs admin (the deployment's security.tokens)" in (
        words
    )
    assert max(len(part.split()) for part in reason if part) > 3  # a block, not a word a line
    wide = runner.invoke(app, ["audit"], env=terminal | {"COLUMNS": "200"})
    header = next(line for line in wide.stdout.splitlines() if "reason" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "ts", "actor", "role", "action", "target", "result", "reason"
    ]  # fmt: skip


def test_jobs_fits_80_columns_with_the_whole_last_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from market_data_orchestrator import cli

    error = (
        "PipelineError: cannot open the store's database: PostgreSQL connect failed at"
        " postgresql://md:***@db.internal:5432/market_data: ConnectionRefusedError"
    )
    jobs = [{"name": "nightly-backfill-equities", "state": "failed", "restarts": 3,
             "desired_replicas": 1, "replicas": [{"state": "failed"}], "paused_by": None,
             "last_error": error}]  # fmt: skip
    monkeypatch.setattr(cli, "_call", lambda *args, **kwargs: jobs)
    terminal = {"COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1", "MDO_TOKEN": ADMIN}
    result = runner.invoke(app, ["jobs"], env=terminal)
    assert result.exit_code == 0, result.output
    lines = _table_lines(result.stdout)
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert "…" not in result.stdout
    assert "nightly-backfill-equities" in result.stdout
    below = " ".join(result.stdout.split("┘", 1)[1].split())  # under the table, wrapped
    assert below == f"nightly-backfill-equities: last error: {error}"
    wide = runner.invoke(app, ["jobs"], env=terminal | {"COLUMNS": "200"})
    header = next(line for line in wide.stdout.splitlines() if "last error" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")][-1] == "last error"
    cells = [line.split("│")[6] for line in wide.stdout.splitlines() if line.count("│") == 7]
    assert "".join(cells).replace(" ", "") == error.replace(" ", "")  # beside, whole


@pytest.mark.parametrize(
    ("token", "said"),
    [(None, "401: set MDO_TOKEN to a token of the deployment"),
     ("not-a-token-1234", "401: MDO_TOKEN is not a token of this deployment")],
)  # fmt: skip
def test_a_401_names_mdo_token(
    monkeypatch: pytest.MonkeyPatch, token: str | None, said: str
) -> None:
    def refuse(method: str, url: str, **kwargs: object) -> httpx.Response:
        request = httpx.Request(method, url)
        detail = {"detail": "missing, malformed or unknown bearer token"}
        return httpx.Response(401, json=detail, request=request)

    monkeypatch.setattr(httpx, "request", refuse)
    monkeypatch.delenv("MDO_TOKEN", raising=False)
    for command in (["jobs"], ["pause", "paced"], ["audit"], ["scale", "paced", "2"]):
        result = _mdo("http://127.0.0.1:1", token, *command)
        assert result.exit_code == 1
        assert said in " ".join(result.output.split()), result.output

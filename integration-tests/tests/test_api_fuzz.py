"""Schemathesis fuzzes the store's and the orchestrator's HTTP APIs from their OpenAPI specs,
as real ``mds serve`` / ``mdo serve`` processes on real PostgreSQL and Redis, without a token
and with each role's token: no 5xx, every answer documented (status code, content type) and
conforming to its schema.

One canary string is part of every secret of both services: the PostgreSQL password (in
the DSNs of the store and of the pipeline jobs), the Redis password (in the Redis URLs of
the store, the orchestrator and the jobs), the store's admin token and the orchestrator's
bearer tokens. After the fuzzing, and after errors caused on purpose (wrong tokens, a wrong
Redis password, DSNs with a wrong password, an unreachable port or no parsable port, a job
that cannot reach its database), the canary must appear in none of: the processes' logs,
any response seen (bodies and headers), ``/healthz``, ``/readyz``, ``/metrics``, the
server-sent events, the orchestrator's jobs, status and audit (API, file and ``mdo``
commands) and the store's audit and job runs. Tokens the client itself sends in its
``Authorization`` header are not scanned (the requests are not), but a rejected token that
contains the canary must not come back either.

Reproducible: hypothesis is derandomized (each operation's examples follow from the
operation), with no database of past examples and no shrinking. Prints the figures.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from market_data_core.testing.servers import RedisServer, free_port, scaled
from market_data_orchestrator.testing import OrchestratorService
from market_data_store.testing import PostgresServer, StoreService

CANARY = "canary-9f3c1d7e-secret"
"""Part of every secret below; it must never come back out of a service."""

STORE_ADMIN_TOKEN = f"{CANARY}-store-admin"
ORCHESTRATOR_TOKENS = {role: f"{CANARY}-{role}" for role in ("viewer", "operator", "admin")}
WRONG_TOKEN = f"{CANARY}-wrong-token"
"""Presented on purpose: a service must neither echo nor log a rejected token."""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = int(os.environ.get("MD_FUZZ_EXAMPLES", "12"))
"""Per operation and generation mode (positive, then negative data): 12 in the default
run, more in ``nox -s stress`` (``MD_FUZZ_EXAMPLES``, 100 there)."""
FEWER = {"POST /v1/admin/backfills": 4}
"""Operations whose accepted requests start a child process (``mdp validate``)."""
STREAMING = {"GET /v1/feedback/stream", "GET /v1/events"}
"""Server-sent events never end: read once each by the canary test, not fuzzed."""
JOB = "ticker"
"""The orchestrator's running job: its control routes are fuzzed with its name too."""


# --- the canary scan --------------------------------------------------------------------


@dataclass
class Scan:
    """What was searched for the canary, in bytes and lines by source; the leaks found."""

    bytes: Counter[str] = field(default_factory=Counter)
    lines: Counter[str] = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)

    def text(self, source: str, data: str | bytes) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self.bytes[source] += len(raw)
        self.lines[source] += raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)
        at = raw.find(CANARY.encode())
        if at >= 0:
            excerpt = raw[max(0, at - 200) : at + 60].decode(errors="replace")
            self.leaks.append(f"{source}: ...{excerpt}...")

    def response(self, source: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        head = "".join(f"{name}: {value}\n" for name, value in headers.items())
        self.text(source, f"{status}\n{head}\n".encode() + body)

    def http(self, source: str, response: httpx.Response) -> httpx.Response:
        self.response(source, response.status_code, response.headers, response.content)
        return response

    def file(self, source: str, path: Path) -> None:
        assert path.is_file(), f"{source}: {path} does not exist"
        self.text(source, path.read_bytes())

    def report(self) -> str:
        return "\n".join(
            f"  {source:<44} {self.bytes[source]:>11,} bytes {self.lines[source]:>8,} lines"
            for source in sorted(self.bytes)
        )


# --- the fuzzing ------------------------------------------------------------------------


@dataclass
class Tally:
    """The requests of one fuzzing run and what came back."""

    operations: set[str] = field(default_factory=set)
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    """Distinct failures, "operation [mode] check (status)" -> the first report of it."""
    unready: int = 0
    """``/readyz`` answers 503 with an unhealthy ``HealthStatus``: its documented verdict."""
    no_negative: set[str] = field(default_factory=set)
    """Operations without any input that negative data could break."""

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500) - self.unready

    def summary(self, title: str) -> str:
        by_class = Counter(f"{status // 100}xx" for status in self.statuses.elements())
        classes = ", ".join(f"{name}: {by_class[name]}" for name in ("2xx", "3xx", "4xx", "5xx"))
        return (
            f"{title}: {len(self.operations)} operations, {self.requests} requests ({classes};"
            f" of the 5xx, {self.unready} documented /readyz verdicts), {self.server_errors}"
            f" server errors, {len(self.failures)} distinct off-spec answers;"
            f" statuses {dict(sorted(self.statuses.items()))}"
        )


def fuzz(
    schema: Any,
    base_url: str,
    headers: Mapping[str, str],
    tally: Tally,
    scan: Scan,
    *,
    source: str,
    path_parameters: Mapping[str, str] | None = None,
    only: Callable[[str], bool] = lambda _: True,
) -> None:
    """Every operation of ``schema`` (but the streaming ones), positive then negative data,
    sent to ``base_url`` with ``headers``; statuses and failures go into ``tally``, every
    response into ``scan``."""
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            if label in STREAMING or not only(label):
                continue
            tally.operations.add(label)
            fixed = {k: v for k, v in (path_parameters or {}).items() if f"{{{k}}}" in label}
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)
                call = _caller(label, mode, base_url, headers, tally, scan, session, source)
                try:
                    _examples(FEWER.get(label, MAX_EXAMPLES))(given(case=strategy)(call))()
                except Unsatisfiable:  # nothing to break: an operation without input
                    assert mode is GenerationMode.NEGATIVE, f"{label}: no request generated"
                    tally.no_negative.add(label)


def _examples(count: int) -> Any:
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def _caller(
    label: str,
    mode: GenerationMode,
    base_url: str,
    headers: Mapping[str, str],
    tally: Tally,
    scan: Scan,
    session: requests.Session,
    source: str,
) -> Callable[[schemathesis.Case], None]:
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=session, headers=dict(headers), timeout=60)
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        scan.response(source, response.status_code, response.headers, response.content)
        checks = CHECKS
        if label == "GET /readyz" and response.status_code == 503:
            assert response.json()["state"] == "unhealthy", response.text
            tally.unready += 1  # still checked: documented, with its schema
            checks = [check for check in CHECKS if check is not not_a_server_error]
        try:
            case.validate_response(response, checks=checks, headers=dict(headers))
        except FailureGroup as group:
            for failure in group.exceptions:
                key = f"{label} [{mode.value}] {failure.title} ({response.status_code})"
                tally.failures.setdefault(key, f"{failure.message}\n{case.as_curl_command()}")

    return call


def _assert_clean(tally: Tally, scan: Scan, title: str, seconds: float) -> None:
    print(f"\n{tally.summary(title)}; {seconds:.1f} s")
    problems = "\n\n".join(f"{key}\n{report}" for key, report in tally.failures.items())
    assert tally.server_errors == 0, f"{tally.server_errors} server errors:\n{problems}"
    assert not tally.failures, f"{len(tally.failures)} off-spec answers:\n{problems}"
    assert not scan.leaks, "the canary secret leaked:\n" + "\n".join(scan.leaks)
    assert tally.requests > 2 * len(tally.operations), "the fuzzer sent (almost) nothing"


# --- the deployments --------------------------------------------------------------------

PIPELINE = """\
name: ticker
nodes:
  - {id: trades, type: synthetic, params: {symbols: 2, seed: 3, count: 1000000, batch_size: 50,
      rate: 200}}
  - {id: bars, type: resample_ohlc, params: {timeframe: 1m, source: fuzz}}
  - {id: store, type: store}
edges: [trades -> bars, bars -> store]
"""
"""A paced job that writes bars straight into PostgreSQL (``MDP_DATABASE_URL``)."""


def _deployment(
    directory: Path, *, port: int, store_url: str, redis_url: str, database_url: str
) -> Path:
    """A deployment file: the ``ticker`` job writing to ``database_url``; a ``broken`` job
    whose database is unreachable (started by hand: its cron never fires in a test)."""
    (directory / "job.yaml").write_text(PIPELINE)
    tokens = "\n".join(
        f"    - {{name: {role}-caller, role: {role},"
        f" sha256: {hashlib.sha256(token.encode()).hexdigest()}}}"
        for role, token in ORCHESTRATOR_TOKENS.items()
    )
    unreachable = f"postgresql://postgres:{CANARY}-pg@127.0.0.1:{free_port()}/postgres"
    path = directory / "deployment.yaml"
    path.write_text(f"""\
jobs:
  - name: {JOB}
    config: job.yaml
    restart: {{policy: on-failure, backoff_initial: 0.5, backoff_max: 2}}
    max_replicas: 2  # the fuzzer scales it: at most two children on a shared machine
    env: {{MDP_DATABASE_URL: "{database_url}", MDP_REDIS_URL: "{redis_url}"}}
  - name: broken
    config: job.yaml
    schedule: "0 0 1 1 *"
    restart: {{policy: never}}
    env: {{MDP_DATABASE_URL: "{unreachable}", MDP_REDIS_URL: "{redis_url}"}}
store: {{url: "{store_url}", poll_interval: 0.5, timeout: 5.0}}
feedback: {{redis_url: "{redis_url}"}}
security:
  control_rate_per_minute: 1000000
  unauthenticated_rate_per_minute: 1000000
  unauthenticated_burst: 1000000
  tokens:
{tokens}
audit: {{path: {directory / "audit.jsonl"}}}
service: {{host: 127.0.0.1, port: {port}}}
""")
    return path


@dataclass
class Stack:
    postgres: PostgresServer
    redis: RedisServer
    store: StoreService
    orchestrator: OrchestratorService
    directory: Path
    scan: Scan = field(default_factory=Scan)
    """Every response the fuzzers saw; the canary test adds the rest."""


def _store(directory: Path, database_url: str, redis_url: str) -> StoreService:
    return StoreService(
        directory,
        database_url=database_url,
        env={
            "MDS_ADMIN_TOKEN": STORE_ADMIN_TOKEN,
            "MDS_REDIS_URL": redis_url,
            "MDS_HEARTBEAT_INTERVAL": "0.5",
            "MDS_HEALTH_INTERVAL": "0.2",
        },
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL and Redis with canary passwords, ``mds serve`` on them with a canary admin
    token, ``mdo serve`` with canary tokens following that store and running a job."""
    directory = tmp_path_factory.mktemp("fuzz")
    with (
        PostgresServer(password=f"{CANARY}-pg") as postgres,
        RedisServer(password=f"{CANARY}-redis") as redis,
        _store(directory, postgres.dsn, redis.url) as store,
    ):
        port = free_port()
        deployment = _deployment(
            directory,
            port=port,
            store_url=store.url,
            redis_url=redis.url,
            database_url=postgres.dsn,
        )
        with OrchestratorService(deployment, port=port) as orchestrator:
            yield Stack(postgres, redis, store, orchestrator, directory)


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# --- fuzzing the two APIs ---------------------------------------------------------------


@pytest.mark.parametrize("caller", ["anonymous", "admin"])
def test_store_api_answers_every_request_as_documented(stack: Stack, caller: str) -> None:
    url = stack.store.url
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = _bearer(STORE_ADMIN_TOKEN if caller == "admin" else None)
    tally, started = Tally(), time.monotonic()
    fuzz(schema, url, headers, tally, stack.scan, source=f"store: fuzzed responses ({caller})")
    _assert_clean(tally, stack.scan, f"store API, {caller}", time.monotonic() - started)


@pytest.mark.parametrize("caller", ["anonymous", "viewer", "operator", "admin"])
def test_orchestrator_api_answers_every_request_as_documented(stack: Stack, caller: str) -> None:
    url = stack.orchestrator.url
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = _bearer(ORCHESTRATOR_TOKENS.get(caller))
    source = f"orchestrator: fuzzed responses ({caller})"
    tally, started = Tally(), time.monotonic()
    fuzz(schema, url, headers, tally, stack.scan, source=source)
    # the same routes again on the real job: the actions reach its `mdp run` child
    fixed = {"name": JOB}
    only: Callable[[str], bool] = lambda label: "{name}" in label  # noqa: E731
    fuzz(schema, url, headers, tally, stack.scan, source=source, path_parameters=fixed, only=only)
    _assert_clean(tally, stack.scan, f"orchestrator API, {caller}", time.monotonic() - started)


# --- the canary -------------------------------------------------------------------------


def _until(predicate: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    limit = scaled(limit)
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {limit:.0f} s waiting for {what}"
        time.sleep(0.2)


def _first_frame(scan: Scan, source: str, url: str, headers: Mapping[str, str]) -> str:
    """The beginning of a server-sent events stream: its first complete frame."""
    received = b""
    with httpx.stream("GET", url, headers=dict(headers), timeout=10) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            received += chunk
            if b"\n\n" in received:
                break
        scan.response(source, response.status_code, response.headers, received)
    return received.decode()


def _commands(
    scan: Scan, commands: Mapping[str, tuple[list[str], dict[str, str]]]
) -> dict[str, int]:
    """Run the CLI commands side by side; scan their stdout and stderr; their exit codes."""
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", *argv],
            env={**os.environ, "COLUMNS": "200", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name, (argv, env) in commands.items()
    }
    results = {}
    try:
        for name, process in running.items():
            out, err = process.communicate(timeout=scaled(120))
            scan.text(f"cli: {name}", out + err)
            results[name] = (process.returncode, (out + err).decode(errors="replace"))
    finally:
        for process in running.values():  # reaped, whatever happened above
            if process.poll() is None:
                process.kill()
            process.communicate()
    return results


def _cause_errors_on_the_store(stack: Stack, client: httpx.Client) -> None:
    scan, url = stack.scan, stack.store.url
    for path in ("/v1/admin/audit", "/v1/admin/schema-version"):
        denied = scan.http("store: denied", client.get(url + path, headers=_bearer(WRONG_TOKEN)))
        assert denied.status_code == 401, denied.text
    migrated = client.post(f"{url}/v1/admin/migrate", headers=_bearer(STORE_ADMIN_TOKEN))
    assert scan.http("store: admin", migrated).status_code == 200, migrated.text


def _cause_errors_on_the_orchestrator(stack: Stack, client: httpx.Client) -> dict[str, Any]:
    """Wrong tokens, a too-low role, the job paused and resumed, the broken job started
    (it cannot reach its database and fails); the broken job's view."""
    scan, url = stack.scan, stack.orchestrator.url
    operator = _bearer(ORCHESTRATOR_TOKENS["operator"])
    for path in ("/v1/jobs", "/v1/audit"):
        denied = scan.http(
            "orchestrator: denied", client.get(url + path, headers=_bearer(WRONG_TOKEN))
        )
        assert denied.status_code == 401, denied.text
    forbidden = client.post(f"{url}/v1/jobs/{JOB}/reload", headers=operator)
    assert scan.http("orchestrator: denied", forbidden).status_code == 403, forbidden.text

    def state(name: str) -> str:
        answer = client.get(f"{url}/v1/jobs/{name}", headers=operator)
        return str(scan.http("orchestrator: jobs", answer).json()["state"])

    scan.http("orchestrator: control", client.post(f"{url}/v1/jobs/{JOB}/start", headers=operator))
    _until(lambda: state(JOB) == "running", f"{JOB} to run on PostgreSQL with the canary password")
    for verb in ("pause", "resume"):
        answer = client.post(f"{url}/v1/jobs/{JOB}/{verb}", headers=operator)
        assert scan.http("orchestrator: control", answer).json()["status"] == "accepted", (
            answer.text
        )
    started = client.post(f"{url}/v1/jobs/broken/start", headers=operator)
    assert scan.http("orchestrator: control", started).status_code == 200, started.text
    _until(lambda: state("broken") == "failed", "the broken job to fail")
    broken = client.get(f"{url}/v1/jobs/broken", headers=operator).json()
    assert broken["last_error"], broken
    return dict(broken)


def _scan_views(stack: Stack, client: httpx.Client) -> None:
    """Health, metrics, status, jobs, audit, feedback and topology of both services."""
    scan = stack.scan
    store, orchestrator = stack.store.url, stack.orchestrator.url
    admin, viewer = _bearer(ORCHESTRATOR_TOKENS["admin"]), _bearer(ORCHESTRATOR_TOKENS["viewer"])
    for path in ("/healthz", "/readyz", "/metrics", "/v1/jobs?limit=1000", "/v1/feedback"):
        scan.http(f"store: {path.split('?')[0]}", client.get(store + path))
    store_audit = client.get(
        f"{store}/v1/admin/audit?limit=1000", headers=_bearer(STORE_ADMIN_TOKEN)
    )
    assert len(scan.http("store: /v1/admin/audit", store_audit).json()) > 0
    for path in ("/healthz", "/readyz", "/metrics"):
        scan.http(f"orchestrator: {path}", client.get(orchestrator + path))
    for path in ("/v1/jobs", f"/v1/jobs/{JOB}", "/v1/jobs/broken", "/v1/topology", "/v1/feedback"):
        scan.http(f"orchestrator: {path}", client.get(orchestrator + path, headers=viewer))
    audit = client.get(f"{orchestrator}/v1/audit?limit=1000", headers=admin)
    denials = [
        r for r in scan.http("orchestrator: /v1/audit", audit).json() if r["result"] == "denied"
    ]
    assert denials, "the denied calls are audited"
    _first_frame(scan, "store: /v1/feedback/stream", f"{store}/v1/feedback/stream", {})
    _first_frame(scan, "orchestrator: /v1/events", f"{orchestrator}/v1/events", viewer)


def _misconfigured(stack: Stack, directory: Path) -> None:
    """A store and an orchestrator with a wrong Redis password (and, for the orchestrator,
    a store that does not answer): they run, degraded, and say so without the secret."""
    scan = stack.scan
    wrong_redis = f"redis://:{CANARY}-wrong-redis@127.0.0.1:{stack.redis.port}/0"
    port = free_port()
    deployment = directory / "misconfigured.yaml"
    deployment.write_text(f"""\
store: {{url: "http://127.0.0.1:{free_port()}", poll_interval: 0.2, timeout: 0.5,
        unhealthy_after: 1}}
feedback: {{redis_url: "{wrong_redis}"}}
audit: {{path: {directory / "misconfigured-audit.jsonl"}}}
service: {{host: 127.0.0.1, port: {port}}}
""")
    (directory / "store").mkdir()
    with (
        _store(directory / "store", stack.postgres.dsn, wrong_redis) as store,
        OrchestratorService(deployment, port=port) as orchestrator,
        httpx.Client(timeout=30) as client,
    ):
        _until(
            lambda: client.get(f"{orchestrator.url}/readyz").status_code == 503,
            "the misconfigured orchestrator to report its store unhealthy",
        )
        for name, url in (("store", store.url), ("orchestrator", orchestrator.url)):
            for path in ("/healthz", "/readyz", "/metrics"):
                scan.http(f"misconfigured {name}: {path}", client.get(url + path))
        feedback = client.get(f"{orchestrator.url}/v1/feedback", headers=_bearer(WRONG_TOKEN))
        scan.http("misconfigured orchestrator: denied", feedback)
    scan.file("misconfigured store: log", store.log)
    scan.file("misconfigured orchestrator: log", orchestrator.log)


def _cli_errors(stack: Stack, directory: Path) -> None:
    """``mds migrate`` and ``mdp run`` with DSNs that cannot work; ``mdo serve`` with an
    invalid deployment; the ``mdo`` commands, with the admin token and with a wrong one."""
    pg = stack.postgres
    invalid = directory / "invalid.yaml"
    invalid.write_text(
        f'feedback: {{redis_url: "redis://:{CANARY}@127.0.0.1:1/0", unknown: 1}}\n'
        f'jobs: [{{name: x, config: missing.yaml, env: {{MDP_DATABASE_URL: "{CANARY}"}}}}]\n'
    )
    mds, mdp = ["market_data_store.cli"], ["market_data_pipeline.cli"]
    mdo = ["market_data_orchestrator.cli"]
    job = stack.directory / "job.yaml"
    redis = f"redis://:{CANARY}-wrong-redis@127.0.0.1:{stack.redis.port}/0"
    url = {"MDO_URL": stack.orchestrator.url}
    admin = {**url, "MDO_TOKEN": ORCHESTRATOR_TOKENS["admin"]}
    dsn = f"postgresql://postgres:{CANARY}-wrong@127.0.0.1"
    results = _commands(
        stack.scan,
        {
            "mds migrate (wrong password)": (
                [*mds, "migrate"], {"MDS_DATABASE_URL": f"{dsn}:{pg.port}/postgres"}
            ),
            "mds migrate (unreachable)": (
                [*mds, "migrate"], {"MDS_DATABASE_URL": f"{dsn}:{free_port()}/postgres"}
            ),
            "mds migrate (unparsable port)": (
                [*mds, "migrate"], {"MDS_DATABASE_URL": f"{dsn}:port/postgres"}
            ),
            "mdp run (wrong password)": (
                [*mdp, "run", str(job)],
                {"MDP_DATABASE_URL": f"{dsn}:{pg.port}/postgres", "MDP_REDIS_URL": redis},
            ),
            "mdp run (unparsable port)": (
                [*mdp, "run", str(job)], {"MDP_DATABASE_URL": f"{dsn}:port/postgres"}
            ),
            "mdo serve (invalid deployment)": ([*mdo, "serve", str(invalid)], {}),
            "mdo jobs": ([*mdo, "jobs"], admin),
            "mdo status": ([*mdo, "status"], admin),
            "mdo audit": ([*mdo, "audit", "--limit", "1000"], admin),
            "mdo jobs (wrong token)": ([*mdo, "jobs"], {**url, "MDO_TOKEN": WRONG_TOKEN}),
        },
    )  # fmt: skip
    # every command fails but two: `mdo status` too, as the broken job makes the orchestrator
    # unhealthy
    succeeded = {name for name, (code, _) in results.items() if code == 0}
    assert succeeded == {"mdo jobs", "mdo audit"}, results
    for name, (code, output) in results.items():  # a clear error, never a crash
        assert "Traceback" not in output, f"{name}:\n{output}"
        assert code == 0 or "error" in output, f"{name}:\n{output}"


def test_the_canary_secret_never_leaks(stack: Stack, tmp_path: Path) -> None:
    scan = stack.scan  # holds every response of the fuzzing tests when they ran first
    fuzzed = sum(scan.bytes.values())
    with httpx.Client(timeout=30) as client:
        ready = scan.http("store: /readyz", client.get(f"{stack.store.url}/readyz"))
        assert ready.status_code == 200, f"the store on PostgreSQL and Redis: {ready.text}"
        _cause_errors_on_the_store(stack, client)
        broken = _cause_errors_on_the_orchestrator(stack, client)

        def feedback() -> dict[str, Any]:
            answer = client.get(
                f"{stack.orchestrator.url}/v1/feedback",
                headers=_bearer(ORCHESTRATOR_TOKENS["viewer"]),
            )
            return dict(answer.json())

        _until(lambda: "store" in feedback()["coordinators"], "the store's feedback over Redis")
        assert feedback()["connected"] is True
        _scan_views(stack, client)
    _misconfigured(stack, tmp_path)
    _cli_errors(stack, tmp_path)
    scan.file("store: log (mds serve)", stack.store.log)
    scan.file("orchestrator: log (mdo serve)", stack.orchestrator.log)
    scan.file("orchestrator: audit file", stack.directory / "audit.jsonl")
    scan.file("postgresql: server log", stack.postgres.log_path)
    scan.file("redis: server log", stack.redis.data_dir / "redis.log")
    print(
        f"\ncanary {CANARY!r} searched in {sum(scan.bytes.values()):,} bytes"
        f" ({fuzzed:,} of fuzzed responses); the broken job's error: {broken['last_error']!r}"
        f"\n{scan.report()}"
    )
    assert not scan.leaks, f"the canary secret leaked ({len(scan.leaks)}):\n" + "\n".join(
        scan.leaks[:20]
    )

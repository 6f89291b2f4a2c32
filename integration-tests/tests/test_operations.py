"""The operations kit in docs/operations/ matches the running platform.

One module-wide platform runs the compose demo's own configs on 127.0.0.1 (host names
swapped for real ports): a real Redis, the store service (`mds serve`, SQLite), the
orchestrator (`mdo serve` of compose/deployment.yaml, which supervises the tick feed) and a
pipeline worker (`mdp run compose/pipeline-p0.yaml` with its metrics served). Against it:
every metric the Grafana dashboard and the alert rules use is exported by a service, every
/metrics body passes `promtool check metrics`, the rules pass `promtool check rules` and
their unit tests, and the docker-compose file runs real commands with real settings,
ports, routes and dependencies."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from prometheus_client.parser import text_string_to_metric_families

from market_data_core.testing.servers import RedisServer, free_port, scaled
from market_data_orchestrator.cli import app as mdo_app
from market_data_orchestrator.deployment import load_deployment
from market_data_pipeline.cli import app as mdp_app
from market_data_pipeline.graph import load_graph
from market_data_pipeline.registry import default_registry
from market_data_pipeline.settings import UnifiedRuntimeSettings
from market_data_store.cli import app as mds_app
from market_data_store.settings import StoreSettings
from market_data_store.testing import StoreService

OPS = Path(__file__).resolve().parents[2] / "docs" / "operations"
COMPOSE = OPS / "docker-compose.yaml"
PROMTOOL_MISSING = "install Debian's prometheus package (apt-get install prometheus) for promtool"

# -- PromQL ----------------------------------------------------------------------------

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "bool", "offset", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords,
    durations and string literals left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges: [5m], [$__rate_interval]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        if match.group(1).lower() not in _KEYWORDS:
            names.add(match.group(1))
    return names


def test_metric_names_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, job) (rate(a_seconds_bucket{route=~"/v1/(x|y)"}'
        "[$__rate_interval]))) > 2 and on() max(b_total) * c / ignoring(x) d offset 5m"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c", "d"}


_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
}


def exported_series(text: str) -> set[str]:
    """The series names a /metrics body can be queried by: a counter family ``x`` as
    ``x_total``, a histogram as ``x_bucket``/``x_count``/``x_sum``, a gauge as ``x``."""
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = _SERIES_SUFFIXES.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
        names |= {sample.name for sample in family.samples}
    return names


def test_exported_series_handle_suffixes() -> None:
    text = (
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1.0\n"
        "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
        'h_seconds_bucket{le="+Inf"} 1.0\nh_seconds_count 1.0\nh_seconds_sum 0.5\n'
        "# HELP g G.\n# TYPE g gauge\ng 2.0\n"
    )
    series = exported_series(text)
    assert {"a_total", "h_seconds_bucket", "h_seconds_count", "h_seconds_sum", "g"} <= series
    assert "a" not in series  # a counter is never queried without its _total
    assert "h_seconds" not in series


# -- the platform ----------------------------------------------------------------------


@dataclass
class Platform:
    store: StoreService
    orchestrator_url: str
    pipeline_url: str
    redis_url: str
    metrics: dict[str, str]


def _swap_hosts(text: str, redis_url: str, store_url: str) -> str:
    return text.replace("redis://redis:6379/0", redis_url).replace("http://store:8080", store_url)


def _wait(
    predicate: Any, what: str, process: subprocess.Popen[bytes], log: Path, limit: float
) -> None:
    deadline = time.monotonic() + scaled(limit)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"{what}: the process exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if predicate():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"timed out after {scaled(limit):.0f} s waiting for {what}:\n{log.read_text()[-3000:]}"
    )


def _series_value(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(scaled(30))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(scaled(5))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("platform")
    started = time.monotonic()
    with RedisServer() as redis:
        store = StoreService(tmp, env={"MDS_REDIS_URL": redis.url, "MDS_HEALTH_INTERVAL": "0.2"})
        with store:
            for name in ("feed.yaml", "pipeline-p0.yaml", "deployment.yaml"):
                text = _swap_hosts((OPS / "compose" / name).read_text(), redis.url, store.url)
                (tmp / name).write_text(text)
            orch_port, metrics_port = free_port(), free_port()
            deployment = yaml.safe_load((tmp / "deployment.yaml").read_text())
            deployment["audit"]["path"] = str(tmp / "audit.jsonl")
            deployment["jobs"][0]["cwd"] = str(tmp)
            deployment["store"]["poll_interval"] = 0.5
            (tmp / "deployment.yaml").write_text(yaml.safe_dump(deployment))
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            orch_log, worker_log = tmp / "mdo.log", tmp / "mdp.log"
            with orch_log.open("wb") as log:
                orchestrator = subprocess.Popen(
                    [sys.executable, "-m", "market_data_orchestrator.cli", "serve",
                     str(tmp / "deployment.yaml"), "--host", "127.0.0.1", "--port", str(orch_port)],
                    env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            worker_env = {
                **env,
                "MDP_METRICS_PORT": str(metrics_port),
                "MDP_METRICS_HOST": "127.0.0.1",
                "MDP_REDIS_URL": redis.url,
            }
            with worker_log.open("wb") as log:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "market_data_pipeline.cli", "run",
                     str(tmp / "pipeline-p0.yaml"), "--quiet"],
                    env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            orch_url = f"http://127.0.0.1:{orch_port}"
            pipe_url = f"http://127.0.0.1:{metrics_port}"
            try:
                _wait(
                    lambda: _series_value(
                        httpx.get(f"{orch_url}/metrics").text, "orchestrator_jobs", state="running"
                    ) >= 1,
                    "the orchestrator to run the feed", orchestrator, orch_log, 60,
                )  # fmt: skip
                _wait(
                    lambda: _series_value(
                        httpx.get(f"{pipe_url}/metrics").text, "pipeline_node_items_in_total", node="store"
                    ) > 0,
                    "the worker to send bars to the store", worker, worker_log, 120,
                )  # fmt: skip
                _wait(  # the sink's request is answered once the store has written it
                    lambda: _series_value(
                        httpx.get(f"{store.url}/metrics").text, "mds_batches_written_total"
                    ) > 0,
                    "the store to write the worker's bars", worker, worker_log, 60,
                )  # fmt: skip
                _wait(  # two good polls 2 s apart: on a loaded machine, after the bars
                    lambda: _series_value(
                        httpx.get(f"{orch_url}/metrics").text, "orchestrator_store_healthy"
                    ) == 1,
                    "the orchestrator to find the store healthy", orchestrator, orch_log, 60,
                )  # fmt: skip
                metrics = {
                    "store": httpx.get(f"{store.url}/metrics").text,
                    "orchestrator": httpx.get(f"{orch_url}/metrics").text,
                    "pipeline": httpx.get(f"{pipe_url}/metrics").text,
                }
                print(
                    f"\nplatform up in {time.monotonic() - started:.1f} s: store ingested"
                    f" {_series_value(metrics['store'], 'mds_ingest_records_total'):.0f} bars,"
                    f" worker read {_series_value(metrics['pipeline'], 'pipeline_node_items_out_total', node='ticks'):.0f}"
                    " trades from Redis"
                )  # fmt: skip
                yield Platform(store, orch_url, pipe_url, redis.url, metrics)
            finally:
                _stop(worker)
                _stop(orchestrator)


def _all_exported(platform: Platform) -> set[str]:
    return set().union(*(exported_series(text) for text in platform.metrics.values()))


def test_the_compose_configs_move_ticks_to_bars_in_the_store(platform: Platform) -> None:
    store = platform.metrics["store"]
    assert _series_value(store, "mds_ingest_records_total", table="bars") > 0
    assert _series_value(store, "mds_write_duration_seconds_count") > 0
    assert _series_value(platform.metrics["orchestrator"], "orchestrator_store_healthy") == 1


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            exprs += [t["expr"] for t in inner.get("targets", [])]
    return exprs


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load((OPS / "prometheus-alerts.yaml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


@pytest.mark.parametrize(
    ("what", "exprs"), [("dashboard", _dashboard_exprs), ("alerts", _alert_exprs)]
)
def test_every_metric_used_is_exported_by_a_running_service(
    platform: Platform, what: str, exprs: Any
) -> None:
    used = set().union(*(metric_names(e) for e in exprs()))
    exported = _all_exported(platform)
    print(f"\n{what}: {len(exprs())} expressions use {len(used)} series; {len(exported)} exported")
    assert len(used) >= 10, used  # the parser found the metrics, not nothing
    missing = used - exported
    assert not missing, f"docs/operations {what} use series no service exports: {sorted(missing)}"


def test_the_dashboard_is_a_grafana_model() -> None:
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "ingest",
        "queue",
        "latency",
        "throughput",
        "pauses",
        "late",
        "jobs",
        "readiness",
    ):
        assert topic in titles, f"no panel about {topic}"
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def _promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None
    )
    if found is None:
        pytest.fail(PROMTOOL_MISSING)
    return found


@pytest.mark.parametrize("service", ["store", "orchestrator", "pipeline"])
def test_metrics_pass_promtool_check_metrics(platform: Platform, service: str) -> None:
    body = platform.metrics[service]
    result = subprocess.run(
        [_promtool(), "check", "metrics"],
        input=body.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    families = len(list(text_string_to_metric_families(body)))
    print(f"\n{service}: {families} metric families, promtool exit {result.returncode}")
    assert result.returncode == 0, (
        f"promtool check metrics on the {service}'s /metrics:\n{result.stdout.decode()}{result.stderr.decode()}"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["check", "rules", "prometheus-alerts.yaml"],
        ["test", "rules", "prometheus-alerts.test.yaml"],
        ["check", "config", "prometheus.yml"],
    ],
    ids=" ".join,
)
def test_promtool_accepts_the_rules_and_the_config(command: list[str]) -> None:
    result = subprocess.run(
        [_promtool(), *command], cwd=OPS, capture_output=True, timeout=120, check=False
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, f"promtool {' '.join(command)}:\n{output}"
    print(f"\npromtool {' '.join(command)}: {output.strip().splitlines()[-1]}")


# -- docker compose --------------------------------------------------------------------

CLIS = {"mds": mds_app, "mdp": mdp_app, "mdo": mdo_app}
SETTINGS = {
    "mds": {f"MDS_{n.upper()}" for n in StoreSettings.model_fields},
    "mdp": {f"MDP_{n.upper()}" for n in UnifiedRuntimeSettings.model_fields},
    "mdo": set(),  # the orchestrator reads its deployment file, no MDO_* settings
}
OURS = {"store": "mds", "orchestrator": "mdo", "pipeline-p0": "mdp", "pipeline-p1": "mdp"}


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _leaf_commands(app: typer.Typer) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(command: Any, prefix: str) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            found[prefix] = command

    walk(typer.main.get_command(app), "")
    return found


def _option(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def _env_files(service: dict[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in service.get("env_file", []):
        example = COMPOSE.parent / f"{name}.example"
        assert example.is_file(), f"{name}: commit {name}.example with the variables to set"
        for line in example.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                values[key.strip()] = value
    return values


def test_compose_services_and_dependencies() -> None:
    services = _compose()["services"]
    assert set(OURS) | {"postgres", "redis"} <= set(services)
    for name, service in services.items():
        depends = service.get("depends_on", [])
        assert set(depends) <= set(services), (
            f"{name} depends on unknown {set(depends) - set(services)}"
        )
        for dependency, condition in depends.items() if isinstance(depends, dict) else []:
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency}'s health"
                )
    for name in OURS:
        assert {"store", "redis"} <= set(services[name]["depends_on"]) or name == "store"
    assert {"postgres", "redis"} <= set(services["store"]["depends_on"])


@pytest.mark.parametrize("name", sorted(OURS))
def test_compose_commands_and_settings_are_real(name: str) -> None:
    service = _compose()["services"][name]
    command = service["command"]
    cli = OURS[name]
    assert command[0] == cli, f"{name}: runs {command[0]}, expected {cli}"
    commands = _leaf_commands(CLIS[cli])
    assert command[1] in commands, f"{name}: `{shlex.join(command)}`: no command {command[1]!r}"
    options = {o for p in commands[command[1]].params for o in getattr(p, "opts", ())}
    flags = {w for w in command if w.startswith("--")}
    assert flags <= options, (
        f"{name}: {sorted(flags - options)} are not options of {cli} {command[1]}"
    )
    environment = service.get("environment", {})
    names = set(environment) | set(_env_files(service))
    assert names <= SETTINGS[cli], f"{name}: {sorted(names - SETTINGS[cli])} are not {cli} settings"
    for key, value in environment.items():
        assert not re.search(r"TOKEN|PASSWORD", key), f"{name}: {key} inline; use an env file"
        assert "@" not in str(value), f"{name}: {key} carries credentials inline; use an env file"
    if cli in {"mds", "mdo"}:
        assert _option(command, "--host") == "0.0.0.0", (
            f"{name}: bind all interfaces in a container"
        )


def _config_paths(service: dict[str, Any]) -> dict[str, Path]:
    """Container paths of the files mounted from the repository, and where they are."""
    mounted = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            host = (COMPOSE.parent / source).resolve()
            files = host.rglob("*") if host.is_dir() else [host]
            for path in files:
                relative = path.relative_to(host) if host.is_dir() else Path()
                mounted[str(Path(target) / relative) if host.is_dir() else target] = path
    return mounted


@pytest.mark.parametrize("name", ["orchestrator", "pipeline-p0", "pipeline-p1"])
def test_compose_configs_exist_and_validate(name: str) -> None:
    service = _compose()["services"][name]
    mounted = _config_paths(service)
    files = [w for w in service["command"] if w.startswith("/etc/")]
    assert files, f"{name}: no config file in its command"
    for file in files:
        assert file in mounted, f"{name}: {file} is not mounted from the repository"
        if OURS[name] == "mdo":
            deployment = load_deployment(mounted[file])
            assert deployment.store.url == "http://store:8080"
            for job in deployment.jobs:
                load_graph(job.config).validated(default_registry())
        else:
            load_graph(mounted[file]).validated(default_registry())
    assert not any("secrets" in str(p) for p in mounted.values()), f"{name}: secrets mounted"


def _published_and_internal_port(service: dict[str, Any], cli: str) -> int:
    command, environment = service["command"], service.get("environment", {})
    if cli == "mdp":
        return int(environment["MDP_METRICS_PORT"])
    port = _option(command, "--port")
    assert port is not None, "pass --port explicitly"
    return int(port)


@pytest.mark.parametrize("name", sorted(OURS))
def test_compose_ports_and_healthchecks_match_the_commands(platform: Platform, name: str) -> None:
    service = _compose()["services"][name]
    cli = OURS[name]
    port = _published_and_internal_port(service, cli)
    for mapping in service.get("ports", []):
        assert int(str(mapping).rsplit(":", 1)[-1]) == port, (
            f"{name}: {mapping} but it listens on {port}"
        )
        assert str(mapping).startswith("127.0.0.1:"), f"{name}: publish on 127.0.0.1 only"
    probe = " ".join(service["healthcheck"]["test"])
    (url,) = re.findall(r"http://127\.0\.0\.1:(\d+)(/[a-z]*)", probe)
    assert int(url[0]) == port, f"{name}: the healthcheck asks port {url[0]}, it listens on {port}"
    running = {
        "mds": platform.store.url,
        "mdo": platform.orchestrator_url,
        "mdp": platform.pipeline_url,
    }
    answer = httpx.get(running[cli] + url[1], timeout=10)
    assert answer.status_code == 200, (
        f"{name}: the healthcheck's {url[1]} answers {answer.status_code}"
    )
    if cli != "mdp":
        assert url[1] in {"/healthz", "/readyz"}


def test_prometheus_scrapes_the_compose_services() -> None:
    config = yaml.safe_load((OPS / "prometheus.yml").read_text())
    services = _compose()["services"]
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    expected = set()
    for name, cli in OURS.items():
        expected.add(f"{name}:{_published_and_internal_port(services[name], cli)}")
    assert targets == expected
    assert (OPS / config["rule_files"][0]).is_file()


def test_secrets_stay_out_of_git() -> None:
    ignored = (OPS / "secrets" / ".gitignore").read_text().split()
    for service in _compose()["services"].values():
        for name in service.get("env_file", []):
            assert Path(name).name in ignored, f"{name} must be git-ignored"


# -- the runbook -----------------------------------------------------------------------


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).strip().replace(" ", "-") for h in headings}


def test_every_alert_links_a_runbook_section() -> None:
    anchors = _anchors((OPS / "runbook.md").read_text())
    rules = yaml.safe_load((OPS / "prometheus-alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            link = rule["annotations"]["runbook"]
            page, _, anchor = link.partition("#")
            assert page == "docs/operations/runbook.md", rule["alert"]
            assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in the runbook"


def test_the_runbook_explains_every_exported_metric(platform: Platform) -> None:
    runbook = (OPS / "runbook.md").read_text()
    section = runbook.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)[{`]", section, flags=re.M))
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for text in platform.metrics.values()
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")  # the client's timestamps of each series
    }
    assert families - documented == set(), "add these metrics to docs/operations/runbook.md"
    assert documented - families == set(), "the runbook lists metrics no service exports"

"""The images that docs/operations names are built from ./Dockerfile, and what they run is
what CI tests.

Read from the files: every image docker-compose.yaml and the Kubernetes manifests run is a
target of the Dockerfile, and compose builds it; its CMD is the command they run (no
ENTRYPOINT, so a Kubernetes ``args`` replaces it whole); it exposes the port they use and
its HEALTHCHECK is compose's; its runtime is CI's Python, slim, non-root and without build
tools; it installs every project package it needs from the built wheels, by path, with the
extras its service needs and uv.lock's versions.

Emulated, since the test machines have no Docker engine: the build context is copied as
.dockerignore selects it, the ``wheels`` stage's commands build the wheels and the
constraints there, each target's ``pip install`` line runs as written into a fresh
virtualenv of CI's Python (the index enabled, as in the image), and each image's CMD runs
from its virtualenv with compose's settings: the store on PostgreSQL and Redis, the
orchestrator supervising the tick feed, a pipeline worker sending bars to the store. Then
every HEALTHCHECK passes."""

import asyncio
import json
import os
import re
import secrets
import shlex
import shutil
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dockerfile_reader import (
    Dockerfile,
    IgnorePattern,
    Instruction,
    copy_context,
    glob_regex,
    in_context,
    may_hold_context,
    parse_dockerfile,
)
from image_emulation import Container, Image, host_env, map_paths, run_command, scaled
from packaging.version import Version
from prometheus_client.parser import text_string_to_metric_families

from market_data_core.testing.servers import RedisServer, free_port
from market_data_pipeline.settings import UnifiedRuntimeSettings
from market_data_store.settings import StoreSettings
from market_data_store.testing import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
OPS = ROOT / "docs" / "operations"
COMPOSE = OPS / "docker-compose.yaml"
K8S = OPS / "k8s"
CI = ROOT / ".github" / "workflows" / "ci.yml"
REGISTRY = "ghcr.io/market-data/market-data-"
TARGETS = ["store", "pipeline", "orchestrator"]
PACKAGES = [
    "market-data-core",
    "market-data-store",
    "market-data-pipeline",
    "market-data-orchestrator",
]
SETTINGS = {
    "mds": {f"MDS_{n.upper()}" for n in StoreSettings.model_fields},
    "mdp": {f"MDP_{n.upper()}" for n in UnifiedRuntimeSettings.model_fields},
    "mdo": set(),  # the orchestrator reads its deployment file
}
BUILD_TOOLS = re.compile(r"\b(uv|apt-get|apk|gcc|cc|make|build-essential|git)\b")


def test_the_parser_reads_stages_continuations_and_both_forms() -> None:
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nARG PY=3.11\nFROM python:${PY}-slim AS base\n"
        "ENV A=1 \\\n    # a comment inside a continuation\n    B='two words'\n"
        "FROM base AS app\nRUN --mount=type=bind,from=base,source=/x,target=/y \\\n"
        "    echo hi\nEXPOSE 80\n"
        'HEALTHCHECK --interval=10s CMD ["python", "-c", "pass"]\nCMD mds serve\n'
    )
    assert list(parsed.stages) == ["base", "app"]
    assert parsed.stages["base"].base == "python:3.11-slim"
    assert [s.name for s in parsed.chain("app")] == ["base", "app"]
    assert parsed.env("app") == {"A": "1", "B": "two words"}
    (run,) = parsed.all("app", "RUN")
    assert run.flag("mount") == ["type=bind,from=base,source=/x,target=/y"]
    assert run.value == "echo hi"
    health = parsed.last("app", "HEALTHCHECK")
    assert health is not None
    assert health.flags == (("interval", "10s"),)
    assert health.words == ["python", "-c", "pass"]
    cmd = parsed.last("app", "CMD")
    assert cmd is not None
    assert cmd.words == ["/bin/sh", "-c", "mds serve"]
    assert parsed.last("app", "ENTRYPOINT") is None


def _dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


# -- what compose and Kubernetes run ---------------------------------------------------


@dataclass(frozen=True)
class Use:
    """One service that runs an image: a compose service or a Kubernetes container."""

    where: str
    target: str
    command: list[str]
    ports: frozenset[int]
    env: dict[str, str | None]  # None: from a Secret
    configs: tuple[Path, ...]  # the repository files of the config paths in its command
    healthcheck: dict[str, Any] | None = None  # compose's
    probes: frozenset[str] = frozenset()  # Kubernetes httpGet paths


def _target(image: str) -> str:
    assert image.startswith(REGISTRY), f"{image} is not one of ours"
    return image.removeprefix(REGISTRY).split(":")[0]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _env_file(name: str) -> dict[str, str]:
    lines = (OPS / f"{name}.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def _mounted(service: dict[str, Any], path: str) -> Path | None:
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith(".") and path.startswith(target + "/"):
            return (OPS / source / path.removeprefix(target + "/")).resolve()
    return None


def _compose_uses() -> list[Use]:
    uses = []
    for name, service in _compose()["services"].items():
        if not service["image"].startswith(REGISTRY):
            continue
        env: dict[str, str | None] = {}
        for file in service.get("env_file", []):
            env |= _env_file(file)
        env |= {key: str(value) for key, value in service.get("environment", {}).items()}
        command = service["command"]
        port = env.get("MDP_METRICS_PORT") or command[command.index("--port") + 1]
        configs = tuple(p for w in command if (p := _mounted(service, w)) is not None)
        uses.append(
            Use(
                f"compose service {name}",
                _target(service["image"]),
                command,
                frozenset({int(str(port))}),
                env,
                configs,
                service["healthcheck"],
            )
        )
    return uses


def _k8s_uses() -> list[Use]:
    uses = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document["kind"] != "Deployment":
                continue
            for container in document["spec"]["template"]["spec"]["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                probes = frozenset(
                    probe["httpGet"]["path"]
                    for key in ("livenessProbe", "readinessProbe", "startupProbe")
                    if (probe := container.get(key))
                )
                ports = frozenset(p["containerPort"] for p in container.get("ports", []))
                uses.append(
                    Use(
                        f"{path.name} container {container['name']}",
                        _target(container["image"]),
                        container["args"],
                        ports,
                        env,
                        (),
                        None,
                        probes,
                    )
                )
    return uses


def _uses(target: str | None = None) -> list[Use]:
    found = _compose_uses() + _k8s_uses()
    return [u for u in found if target is None or u.target == target]


def test_every_image_compose_and_kubernetes_run_is_a_target_compose_builds() -> None:
    dockerfile = _dockerfile()
    uses = _uses()
    assert {u.target for u in uses} == set(TARGETS), "the files name other images than these"
    for use in uses:
        assert use.target in dockerfile.stages, f"{use.where}: no Dockerfile target {use.target}"
    for name, service in _compose()["services"].items():
        if service["image"].startswith(REGISTRY):
            build = service.get("build")
            assert build, f"compose service {name}: no build section"
            assert (OPS / build["context"]).resolve() == ROOT, f"{name}: build the repository"
            dockerfile_path = OPS / build["context"] / build.get("dockerfile", "Dockerfile")
            assert dockerfile_path.resolve() == DOCKERFILE, f"{name}: build {DOCKERFILE.name}"
            assert build["target"] == _target(service["image"]), f"{name}: wrong target"


@pytest.mark.parametrize("target", TARGETS)
def test_the_cmd_is_the_command_compose_and_kubernetesrun(target: str) -> None:
    dockerfile = _dockerfile()
    assert dockerfile.last(target, "ENTRYPOINT") is None, (
        f"{target}: an ENTRYPOINT would run before Kubernetes' args (which name the program)"
    )
    cmd = dockerfile.last(target, "CMD")
    assert cmd is not None
    assert cmd.value.startswith("["), f"{target}: exec form, so the CLI gets SIGTERM"
    commands = [u.command for u in _uses(target)]
    assert cmd.words in commands, f"{target}: CMD {cmd.words} is none of {commands}"
    for use in _uses(target):
        assert use.command[:2] == cmd.words[:2], f"{use.where} runs {use.command}"


def _exposed(target: str) -> set[int]:
    return {
        int(p.split("/")[0]) for e in _dockerfile().all(target, "EXPOSE") for p in e.value.split()
    }


def _health_options(instruction: Instruction) -> dict[str, str]:
    return {key.replace("-", "_"): value for key, value in instruction.flags}


@pytest.mark.parametrize("target", TARGETS)
def test_ports_healthcheck_and_environment_match_compose_and_kubernetes(target: str) -> None:
    dockerfile = _dockerfile()
    exposed = _exposed(target)
    uses = _uses(target)
    assert exposed == set().union(*(u.ports for u in uses)), f"{target}: EXPOSE {exposed}"
    health = dockerfile.last(target, "HEALTHCHECK")
    assert health is not None, f"{target}: no HEALTHCHECK"
    (url,) = re.findall(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", " ".join(health.words))
    assert int(url[0]) in exposed, f"{target}: the HEALTHCHECK asks port {url[0]}"
    for use in uses:
        if use.healthcheck is not None:
            assert ["CMD", *health.words] == use.healthcheck["test"], use.where
            options = {k: str(v) for k, v in use.healthcheck.items() if k != "test"}
            assert _health_options(health) == options, use.where
        if use.probes:
            assert url[1] in use.probes, f"{use.where} probes {use.probes}, not {url[1]}"
    env = dockerfile.env(target)
    cmd = dockerfile.last(target, "CMD")
    assert cmd is not None
    cli = cmd.words[0]
    ours = {k for k in env if re.match(r"MD[A-Z]_", k)}
    assert ours <= SETTINGS[cli], f"{target}: {ours - SETTINGS[cli]} are not {cli} settings"
    for use in uses:
        for key in ours & set(use.env):
            assert use.env[key] in {env[key], None}, f"{use.where}: {key} differs from the image's"


def _ci_python() -> str:
    steps = yaml.safe_load(CI.read_text())["jobs"]["nox"]["steps"]
    (version,) = [
        s["with"]["python-version"] for s in steps if "python-version" in s.get("with", {})
    ]
    return str(version)


@pytest.mark.parametrize("target", TARGETS)
def test_the_runtime_is_ci_python_slim_non_root_and_without_build_tools(target: str) -> None:
    dockerfile = _dockerfile()
    chain = dockerfile.chain(target)
    assert chain[0].base == f"python:{_ci_python()}-slim", (
        f"{target}: CI tests Python {_ci_python()}"
    )
    assert "wheels" not in [s.name for s in chain]
    user = dockerfile.last(target, "USER")
    assert user is not None, f"{target}: runs as root"
    uid = user.value.split(":")[0]
    assert uid.isdigit(), f"{target}: a numeric USER, so Kubernetes' runAsNonRoot can check it"
    assert int(uid) != 0, f"{target}: runs as root"
    for stage in chain:
        assert not stage.all("ADD"), f"{stage.name}: ADD"
        for copy in stage.all("COPY"):
            assert not copy.flag("from"), f"{stage.name}: line {copy.line} copies from a stage"
        for run in stage.all("RUN"):
            assert not BUILD_TOOLS.search(run.value), f"{stage.name}: line {run.line} builds"
            if "pip install" in run.value:
                assert "--only-binary=:all:" in run.value, f"line {run.line}: binaries only"


# -- what each image installs ----------------------------------------------------------


@dataclass(frozen=True)
class PipInstall:
    instruction: Instruction
    wheels: dict[str, str]  # distribution -> the wheel's path pattern in the image
    requirements: dict[str, frozenset[str]]  # distribution -> extras
    constraints: str
    mount_source: str
    mount_target: str


def _pip_install(target: str) -> PipInstall:
    runs = [r for r in _dockerfile().stages[target].all("RUN") if "pip install" in r.value]
    assert len(runs) == 1, f"{target}: one `pip install` of every project wheel, not {len(runs)}"
    (run,) = runs
    words = shlex.split(run.value)
    assert words[:2] == ["pip", "install"], f"line {run.line}: {words[:2]}"
    wheels, requirements, constraints = {}, {}, ""
    for index, word in enumerate(words[2:], 2):
        if word in {"-c", "--constraint"}:
            constraints = words[index + 1]
        elif match := re.fullmatch(r"\S+/(market_data_[a-z]+)-\*\.whl", word):
            wheels[match[1].replace("_", "-")] = word
        elif match := re.fullmatch(r"(market-data-[a-z]+)\[([a-z,]*)\]", word):
            requirements[match[1]] = frozenset(filter(None, match[2].split(",")))
        else:
            assert word.startswith("-") or words[index - 1] in {"-c", "--constraint"}, (
                f"line {run.line}: {word!r} is neither a project wheel nor a requirement of one"
            )
    (mount,) = run.flag("mount")
    options = dict(part.split("=", 1) for part in mount.split(","))
    assert options["type"] == "bind", f"line {run.line}: bind the wheels, never copy them"
    assert options["from"] == "wheels", f"line {run.line}: the wheels stage's output"
    return PipInstall(run, wheels, requirements, constraints, options["source"], options["target"])


def _pyproject(dist: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "packages" / dist / "pyproject.toml").read_text())["project"]


def _project_closure(requirements: dict[str, frozenset[str]]) -> set[str]:
    """The project distributions these requirements (with their extras) pull in."""
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = list(requirements.items())
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        found.add(name)
        project = _pyproject(name)
        needs = list(project.get("dependencies", []))
        for extra in extras:  # an unknown extra: test_each_image_has_the_extras... names it
            needs += project.get("optional-dependencies", {}).get(extra, [])
        for need in needs:
            match = re.match(r"\s*(market-data-[a-z]+)\s*(?:\[([^\]]*)\])?", need)
            if match:
                more = frozenset(e.strip() for e in (match[2] or "").split(",") if e.strip())
                pending.append((match[1], more))
    return found


def _config_node_types(path: Path) -> set[str]:
    return {node["type"] for node in yaml.safe_load(path.read_text())["nodes"]}


# the pipeline extra a node type of a config needs, and the extra a setting needs
NODE_EXTRAS = {"redis_stream": "redis", "store": "store"}
PIPELINE_SETTING_EXTRAS = {"MDP_REDIS_URL": "redis", "MDP_STORE_FEEDBACK_URL": "http"}


def _needs(target: str) -> dict[str, set[str]]:
    """The extras each service of an image needs, from what compose and Kubernetes give it:
    its settings, the configs it runs and, for the orchestrator, its jobs' configs."""
    needs: dict[str, set[str]] = {}
    for use in _uses(target):
        if target == "store":
            wanted = needs.setdefault("market-data-store", set())
            if "MDS_REDIS_URL" in use.env:
                wanted.add("redis")
            if str(use.env.get("MDS_DATABASE_URL")).startswith("postgresql"):
                wanted.add("postgres")
        elif target == "pipeline":
            wanted = needs.setdefault("market-data-pipeline", set())
            wanted |= {v for k, v in PIPELINE_SETTING_EXTRAS.items() if k in use.env}
            for config in use.configs:
                wanted |= {NODE_EXTRAS[t] for t in _config_node_types(config) if t in NODE_EXTRAS}
        else:
            for config in use.configs:
                deployment = yaml.safe_load(config.read_text())
                wanted = needs.setdefault("market-data-orchestrator", set())
                if deployment.get("feedback", {}).get("redis_url"):
                    wanted.add("redis")
                jobs = needs.setdefault("market-data-pipeline", set())
                for job in deployment["jobs"]:
                    types = _config_node_types(config.parent / job["config"])
                    jobs |= {NODE_EXTRAS[t] for t in types if t in NODE_EXTRAS}
    return needs


@pytest.mark.parametrize("target", TARGETS)
def test_each_image_installs_every_project_wheel_it_needs_by_path(target: str) -> None:
    pip = _pip_install(target)
    line = pip.instruction.line
    closure = _project_closure(pip.requirements)
    assert set(pip.wheels) == closure, (
        f"line {line}: pass the wheel of each of {sorted(closure)} by path (else pip takes an "
        f"older release of the same name from the index); passed {sorted(pip.wheels)}"
    )
    for dist, pattern in pip.wheels.items():
        assert pattern.startswith(pip.mount_target + "/"), f"line {line}: {pattern} is not mounted"
        assert pattern.endswith("-*.whl"), (
            f"line {line}: no version in the Dockerfile: {dist}-*.whl"
        )
    assert pip.constraints == f"{pip.mount_target}/constraints.txt", (
        f"line {line}: install uv.lock's versions (the constraints the wheels stage exports)"
    )
    builder = " ".join(r.value for r in _dockerfile().stages["wheels"].all("RUN"))
    built = set(re.findall(r"uv build --package (\S+) --wheel --out-dir (\S+)", builder))
    assert {(dist, pip.mount_source) for dist in pip.wheels} <= built, (
        "build every wheel it installs"
    )
    assert "uv export --locked" in builder, "export the locked versions, failing on a stale lock"
    assert f"--output-file {pip.mount_source}/constraints.txt" in builder


@pytest.mark.parametrize("target", TARGETS)
def test_each_image_has_the_extras_its_service_needs(target: str) -> None:
    installed = _pip_install(target).requirements
    needs = _needs(target)
    assert needs, f"{target}: found no need in compose or Kubernetes"
    for dist, extras in needs.items():
        assert dist in installed, f"{target}: {dist} is not installed"
        assert extras <= installed[dist], f"{target}: {dist} needs [{','.join(sorted(extras))}]"
    for dist, extras in installed.items():
        known = set(_pyproject(dist).get("optional-dependencies", {}))
        assert extras <= known, f"{target}: {dist} has no extras {sorted(extras - known)}"
    if target == "orchestrator":  # its jobs are `mdp run` children: what a worker runs
        pipeline = _pip_install("pipeline").requirements["market-data-pipeline"]
        assert installed["market-data-pipeline"] == pipeline


def test_the_dockerignore_matcher() -> None:
    patterns = [
        IgnorePattern(include, glob, glob_regex(glob))
        for include, glob in [
            (False, "*"),
            (True, "packages/*/src"),
            (True, "uv.lock"),
            (False, "**/__pycache__"),
            (False, "**/*.py[cod]"),
        ]
    ]
    assert in_context("packages/a/src/m/x.py", patterns)
    assert in_context("uv.lock", patterns)
    assert not in_context("packages/a/tests/x.py", patterns)
    assert not in_context("packages/a/src/__pycache__/x.txt", patterns)
    assert not in_context("packages/a/src/x.pyc", patterns)
    assert not in_context(".git/config", patterns)
    assert may_hold_context("packages", patterns)
    assert may_hold_context("packages/a", patterns)
    assert not may_hold_context(".venv", patterns)


# -- the build, emulated ---------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    context: list[str]  # the files sent to the daemon
    dist: Path  # the wheels stage's /dist
    wheels: dict[str, Path]  # distribution -> its wheel


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The ``wheels`` stage: its RUN commands in a copy of the build context."""
    if shutil.which("uv") is None:
        pytest.fail("the wheels stage runs uv: install it (pip install uv)")
    tmp = tmp_path_factory.mktemp("image-build")
    context, dist = tmp / "context", tmp / "dist"
    files = copy_context(ROOT, context)
    dockerfile = _dockerfile()
    stage = dockerfile.stages["wheels"]
    (workdir,) = [w.value for w in stage.all("WORKDIR")]
    copies = [c.value for c in stage.all("COPY") if not c.flag("from")]
    assert copies == [". ."], f"the wheels stage copies {copies}: emulate that here"
    env = host_env() | dockerfile.env("wheels")
    for run in stage.all("RUN"):
        command = map_paths(run.value, {"/dist": dist, workdir: context})
        run_command(
            ["sh", "-c", command],
            what=f"the wheels stage, line {run.line}",
            limit=600,
            cwd=context,
            env=env,
        )
    wheels = {p.name.split("-")[0].replace("_", "-"): p for p in dist.glob("*.whl")}
    return Build(files, dist, wheels)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_build_context_is_what_the_build_reads_and_no_secret(build: Build) -> None:
    assert set(build.wheels) == set(PACKAGES)
    for dist, wheel in build.wheels.items():
        assert Version(wheel.name.split("-")[1]) == Version(_pyproject(dist)["version"])
    constraints = (build.dist / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("pydantic==") for line in constraints), "uv.lock's pins"
    assert not [line for line in constraints if line.startswith("market-data-")], (
        "the project packages come from the wheels, never from a pin an index could answer"
    )
    for path in build.context:
        assert not re.search(r"(^|/)(\.git|\.venv|\.nox|__pycache__|tests)(/|$)", path), path
        assert "secrets" not in path, f"{path} is sent to the daemon"
    names = sorted(w.name for w in build.wheels.values())
    print(f"\nbuild context: {len(build.context)} files; wheels: {names}")


# -- the images, emulated --------------------------------------------------------------


@pytest.fixture(scope="module")
def images(build: Build, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image]:
    """Each target's runtime: a fresh virtualenv of CI's Python and the target's
    ``pip install`` line, run as written with the wheels stage's output where it is bound."""
    dockerfile = _dockerfile()
    python = dockerfile.args["PYTHON_VERSION"]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert here == python, f"the images run Python {python}; run this test with it, not {here}"
    tmp = tmp_path_factory.mktemp("images")
    found = {}
    for target in TARGETS:
        venv = tmp / target
        run_command(
            [sys.executable, "-m", "venv", "--upgrade-deps", str(venv)],
            what=f"{target}: a fresh virtualenv",
            limit=300,
            env=host_env(),
        )
        pip = _pip_install(target)
        command = map_paths(pip.instruction.value, {pip.mount_target: build.dist})
        path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        run_command(
            ["sh", "-c", command],
            what=f"{target}: the Dockerfile's pip install (line {pip.instruction.line})",
            limit=900,
            cwd=tmp,
            env=host_env(PATH=path),
        )
        workdir = dockerfile.last(target, "WORKDIR")
        assert workdir is not None
        found[target] = Image(target, venv, dockerfile.env(target), workdir.value)
    return found


EXTRA_MODULES = {
    "postgres": ["asyncpg", "sqlalchemy.ext.asyncio", "greenlet"],
    "redis": ["redis.asyncio"],
    "http": ["httpx"],
    "store": ["market_data_store.client"],
}
CLI_MODULES = {
    "mds": "market_data_store.cli",
    "mdp": "market_data_pipeline.cli",
    "mdo": "market_data_orchestrator.cli",
}
_INSPECT = """
import importlib, importlib.metadata as md, json, sys
found = {"dists": {}, "modules": {}}
for name in sys.argv[1].split(","):
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url")
    found["dists"][name] = {"version": dist.version, "url": url}
for module in sys.argv[2].split(","):
    found["modules"][module] = importlib.import_module(module).__file__
print(json.dumps(found))
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("target", TARGETS)
def test_each_image_holds_the_built_wheels_and_what_its_service_needs(
    images: dict[str, Image], build: Build, target: str
) -> None:
    image = images[target]
    pip = _pip_install(target)
    cmd = _dockerfile().last(target, "CMD")
    assert cmd is not None
    assert (image.venv / "bin" / cmd.words[0]).is_file(), f"{target}: no {cmd.words[0]} command"
    modules = [CLI_MODULES[cmd.words[0]]]
    for extras in pip.requirements.values():
        modules += [m for extra in sorted(extras) for m in EXTRA_MODULES.get(extra, [])]
    python = str(image.venv / "bin" / "python")
    output = run_command(
        [python, "-c", _INSPECT, ",".join(PACKAGES), ",".join(modules)],
        what=f"{target}: imports",
        limit=120,
        env=host_env(),
    )
    found = json.loads(output.strip().splitlines()[-1])
    assert set(found["dists"]) == _project_closure(pip.requirements), f"{target}: {found['dists']}"
    for dist, seen in found["dists"].items():
        wheel = build.wheels[dist]
        assert seen["url"] == wheel.as_uri(), f"{target}: {dist} came from {seen['url']}"
        assert seen["version"] == wheel.name.split("-")[1]
    for module, path in found["modules"].items():
        assert path.startswith(str(image.venv)), f"{target}: {module} from {path}"
    run_command(
        [python, "-m", "pip", "check"], what=f"{target}: pip check", limit=120, env=host_env()
    )


# -- the containers, emulated ----------------------------------------------------------


def _series(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _mount_repository_files(container: Container, service: dict[str, Any]) -> None:
    """compose's bind mounts of repository folders, host names and paths localized."""
    for volume in service.get("volumes", []):
        source, inside, *_ = volume.split(":")
        if not source.startswith("."):
            continue  # a named volume: empty at first
        for file in (OPS / source).iterdir():
            text = file.read_text()
            if file.suffix in {".yaml", ".yml"}:
                text = yaml.safe_dump(container.localize_tree(yaml.safe_load(text)))
            (container.path(inside) / file.name).write_text(text)


@dataclass
class Platform:
    containers: dict[str, Container]


def _cmd(target: str) -> list[str]:
    cmd = _dockerfile().last(target, "CMD")
    assert cmd is not None
    return cmd.words


@pytest.fixture(scope="module")
def platform(
    images: dict[str, Image], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The images' CMDs with compose's settings: the store on PostgreSQL (compose's
    database) and Redis, the orchestrator supervising compose's tick feed, a pipeline worker
    running compose's partition-0 config as its /etc/market-data/pipeline.yaml."""
    tmp = tmp_path_factory.mktemp("containers")
    services = _compose()["services"]
    containers = {
        t: Container(images[t], tmp / t, {p: free_port() for p in _exposed(t)}) for t in TARGETS
    }
    store, pipeline, orchestrator = (containers[t] for t in ("store", "pipeline", "orchestrator"))
    started = time.monotonic()
    with PostgresServer(password=secrets.token_hex(8)) as postgres, RedisServer() as redis:
        asyncio.run(postgres.create_database(services["postgres"]["environment"]["POSTGRES_DB"]))
        (store_port,) = _exposed("store")
        for container in containers.values():
            container.hosts = {
                "redis://redis:6379/0": redis.url,
                f"http://store:{store_port}": store.url(store_port),
            }
        try:
            env = {**_env_file("secrets/store.env"), **services["store"]["environment"]}
            env["MDS_DATABASE_URL"] = postgres.dsn_for(
                services["postgres"]["environment"]["POSTGRES_DB"]
            )
            env["MDS_ADMIN_TOKEN"] = secrets.token_hex(16)
            store.start(_cmd("store"), env)
            store.wait(
                lambda: httpx.get(store.url(store_port, "/readyz")).status_code == 200,
                "the store image to be ready on PostgreSQL",
                120,
            )
            _mount_repository_files(orchestrator, services["orchestrator"])
            (orch_port,) = _exposed("orchestrator")
            orchestrator.start(_cmd("orchestrator"), {})
            orchestrator.wait(
                lambda: (
                    _series(
                        httpx.get(orchestrator.url(orch_port, "/metrics")).text,
                        "orchestrator_jobs",
                        state="running",
                    )
                    >= 1
                ),
                "the orchestrator image to run the tick feed",
                120,
            )
            worker = services["pipeline-p0"]
            source = _mounted(worker, worker["command"][2])
            assert source is not None
            config = pipeline.localize_tree(yaml.safe_load(source.read_text()))
            pipeline.path(_cmd("pipeline")[2]).write_text(yaml.safe_dump(config))
            (metrics_port,) = _exposed("pipeline")
            pipeline.start(_cmd("pipeline"), {k: str(v) for k, v in worker["environment"].items()})
            pipeline.wait(
                lambda: (
                    _series(
                        httpx.get(pipeline.url(metrics_port, "/metrics")).text,
                        "pipeline_node_items_in_total",
                        node="store",
                    )
                    > 0
                ),
                "the pipeline image to send bars to the store",
                180,
            )
            store.wait(  # the sink's request is answered once the store has written it
                lambda: (
                    _series(
                        httpx.get(store.url(store_port, "/metrics")).text,
                        "mds_batches_written_total",
                    )
                    > 0
                ),
                "the store image to write the pipeline's bars",
                120,
            )
            print(f"\nthe images' platform up in {time.monotonic() - started:.1f} s")
            yield Platform(containers)
        finally:
            for container in reversed(containers.values()):
                container.stop()


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("target", TARGETS)
def test_every_healthcheck_and_probe_passes_in_the_emulated_containers(
    platform: Platform, target: str
) -> None:
    container = platform.containers[target]
    health = _dockerfile().last(target, "HEALTHCHECK")
    assert health is not None
    words = container.command(health.words)
    env = container.env({})
    program = shutil.which(words[0], path=env["PATH"])
    assert program is not None
    assert program.startswith(str(container.image.venv)), f"{target}: {words[0]} is {program}"
    options = _health_options(health)
    timeout = float(options["timeout"].removesuffix("s")) * int(options["retries"])
    run_command(
        [program, *words[1:]],
        what=f"{target}: its HEALTHCHECK",
        limit=timeout,
        env=env,
        cwd=container.path(container.image.workdir),
    )
    (port,) = _exposed(target)
    for use in _uses(target):
        for path in sorted(use.probes):
            answer = httpx.get(container.url(port, path), timeout=scaled(10))
            assert answer.status_code == 200, f"{use.where}: {path} answers {answer.status_code}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_images_move_ticks_to_bars_in_postgresql(platform: Platform) -> None:
    store, orchestrator = platform.containers["store"], platform.containers["orchestrator"]
    (store_port,) = _exposed("store")
    (orch_port,) = _exposed("orchestrator")
    metrics = httpx.get(store.url(store_port, "/metrics"), timeout=scaled(10)).text
    bars = _series(metrics, "mds_ingest_records_total", table="bars")
    assert bars > 0
    ready = httpx.get(store.url(store_port, "/readyz"), timeout=scaled(10)).json()
    (database,) = [c for c in ready["components"] if c["name"] == "database"]
    assert database["details"]["backend"] == "postgresql", database  # through asyncpg
    print(f"\nthe store image stored {bars:.0f} bars in PostgreSQL; database: {database}")
    # the orchestrator polls /readyz every 2 s and calls the store healthy after two good
    # answers in a row: on a loaded machine that verdict may come after the bars do
    orchestrator.wait(
        lambda: (
            _series(
                httpx.get(orchestrator.url(orch_port, "/metrics"), timeout=scaled(10)).text,
                "orchestrator_store_healthy",
            )
            == 1
        ),
        "the orchestrator image to find the store image healthy",
        60,
    )


def test_image_tags_follow_the_release() -> None:
    """Compose and Kubernetes tag every project image with the version its wheels carry."""
    images = [service["image"] for service in _compose()["services"].values()]
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] == "Deployment":
                spec = document["spec"]["template"]["spec"]
                images += [container["image"] for container in spec["containers"]]
    ours = [image for image in images if image.startswith(REGISTRY)]
    assert ours
    for image in ours:
        role, _, tag = image.removeprefix(REGISTRY).partition(":")
        assert tag == _pyproject(f"market-data-{role}")["version"], f"{image}: not the release"

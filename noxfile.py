"""Sessions for the whole workspace. ``uv run nox`` runs the default ones (what CI runs).

- lint: ruff check and ruff format --check
- typecheck: mypy --strict on every package's src/
- tests(package=...): each package's tests but its tests/contracts, in an environment
  synced from uv.lock
- wheel: market-data-core built as a wheel, installed alone (no workspace), its tests run
- index(package=...): each package installed by name with pip, the public index enabled and
  the built wheels offered with --find-links, as a user would: the project's own
  distributions (2.x) are chosen over the older, unrelated releases of the same names on
  PyPI, and the installed commands work
- contracts(package=...): each package built as a wheel and installed in a fresh environment
  with only core's wheel (and the wheels of the project packages it depends on), its
  extras and its test group; its tests/contracts run there against the current schemas
  (docs/contracts) and again against the previous release's (docs/contracts/releases/)
- integration: integration-tests/ against real PostgreSQL, redis-server and promtool: end to
  end, backpressure, faults, API fuzzing, operations files, generated docs
- bench (not default): benchmarks that print ratios against a baseline of the same run
- stress (not default): the version rule's stress tests, larger and repeated, and the API
  fuzzing with more examples (the default run has them at a size that takes seconds)

Each project wheel is built once per ``nox`` process (``wheelhouse``): the wheel, index and
contracts sessions install the same files. The test suites run on pytest-xdist workers
(``WORKERS``): they wait on servers and child processes more than they compute, so more
workers than cores pay. ``scripts/collected_ids.sh`` prints every session's test ids.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import nox

# Some machines (this project's sandbox among them) set PYTHONDONTWRITEBYTECODE: every Python
# process then compiles each module it imports from source. Importing the store's service and
# the pipeline's job took 3.5 s of CPU here, against 1.2 s from bytecode. The suites start
# hundreds of processes (servers, CLIs, pytest-xdist workers), so the sessions let Python write
# its caches: each environment compiles a module once, on first import. The caches are
# gitignored, and the wheels and the image's build context leave them out.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "no" if os.environ.get("CI") else "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = [
    "lint",
    "typecheck",
    "tests",
    "wheel",
    "index",
    "contracts",
    "integration",
]

ROOT = Path(__file__).parent
PACKAGES = [
    "market-data-core",
    "market-data-store",
    "market-data-pipeline",
    "market-data-orchestrator",
]
PYTEST = ["pytest", "-p", "no:cacheprovider", "--durations=10"]
WORKERS: dict[str, str] = {
    "market-data-core": "2",
    "market-data-store": "4",
    "market-data-pipeline": "2",
    "market-data-orchestrator": "4",
    "integration": "2",  # each test starts a platform of processes: 3 timed out a browser test
}
"""pytest-xdist workers per suite (``-n``); ``MD_TEST_WORKERS`` overrides them all (``0``:
no workers, the tests run in the pytest process)."""
CONTRACTS = ROOT / "docs" / "contracts"
CONTRACT_EXTRAS: dict[str, list[str]] = {
    "market-data-core": [],
    "market-data-store": [],
    "market-data-pipeline": [],
    "market-data-orchestrator": [],
}
"""The extras each package's contract tests need (none: they run on the plain install)."""


def sync(session: nox.Session, *args: str) -> None:
    """Install exactly what uv.lock pins into the session's environment."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        silent=True,
    )


@nox.session
def lint(session: nox.Session) -> None:
    sync(session, "--only-group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    sync(session, "--all-packages", "--all-extras", "--group", "typecheck", "--group", "test")
    session.run("mypy", *(f"packages/{package}/src" for package in PACKAGES))


@nox.session
@nox.parametrize("package", PACKAGES, ids=[p.removeprefix("market-data-") for p in PACKAGES])
def tests(session: nox.Session, package: str) -> None:
    """A package's tests (its tests/contracts run in ``contracts``, from its wheel)."""
    sync(session, "--package", package, "--all-extras", "--group", "test")
    tests_dir = f"packages/{package}/tests"
    session.run(
        *PYTEST, *workers(package), tests_dir, f"--ignore={tests_dir}/contracts", *session.posargs
    )


def workers(suite: str) -> list[str]:
    """pytest-xdist's ``-n`` for ``suite`` (``WORKERS``, or ``$MD_TEST_WORKERS``)."""
    return ["-n", os.environ.get("MD_TEST_WORKERS") or WORKERS[suite]]


@nox.session
def wheel(session: nox.Session) -> None:
    """Build market-data-core's wheel and test it installed alone, outside the workspace."""
    built = _build_wheel(session, "market-data-core")
    pyproject = nox.project.load_toml(ROOT / "packages/market-data-core/pyproject.toml")
    session.install(f"{built}[redis]", *nox.project.dependency_groups(pyproject, "test"))
    session.run(
        "python",
        "-c",
        "import market_data_core, sys; p = market_data_core.__file__;"
        " sys.exit(0 if 'site-packages' in p else f'imported from {p}, not the wheel')",
    )
    session.run(
        *PYTEST, *workers("market-data-core"), "packages/market-data-core/tests", *session.posargs
    )


INDEX_EXTRAS: dict[str, list[str]] = {
    "market-data-core": [],
    "market-data-store": ["postgres"],
    "market-data-pipeline": ["store"],
    "market-data-orchestrator": [],
}
"""What a user of each package would ``pip install``."""
INDEX_COMMANDS: dict[str, list[list[str]]] = {
    "market-data-core": [["mdc-schemas", "--help"]],
    "market-data-store": [["mds", "--help"], ["mds", "migrate"]],
    "market-data-pipeline": [["mdp", "run", str(ROOT / "examples" / "quickstart.yaml")]],
    "market-data-orchestrator": [["mdo", "--help"]],
}


@nox.session(reuse_venv=False)
@nox.parametrize("package", PACKAGES, ids=[p.removeprefix("market-data-") for p in PACKAGES])
def index(session: nox.Session, package: str) -> None:
    """``pip install --find-links dist <package>`` with PyPI enabled, in a fresh venv.

    The names of the four distributions exist on PyPI with older, unrelated releases; the
    project's 2.x line and the lower bounds of every dependent keep a resolver from mixing
    them. Every project distribution installed must be the version built here, and the
    package's commands must run (the pipeline's main job included)."""
    tmp = Path(session.create_tmp()).resolve()
    extras = INDEX_EXTRAS[package]
    flat = tmp / "links"
    shutil.rmtree(flat, ignore_errors=True)
    flat.mkdir()
    for name in _project_closure(package, extras):
        shutil.copy(_build_wheel(session, name), flat)
    venv = tmp / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    session.run(
        *pip, "install", "--quiet", "--find-links", str(flat),
        f"{package}[{','.join(extras)}]" if extras else package,
        external=True,
    )  # fmt: skip
    expected = {name: _version_of(name) for name in PACKAGES}
    session.run(
        str(venv / "bin" / "python"),
        "-c",
        "import importlib.metadata as m, json, sys\n"
        f"expected = {expected!r}\n"
        "names = {d.metadata['Name'].lower().replace('_', '-'): d for d in m.distributions()}\n"
        "found = {n: names[n].version for n in expected if n in names}\n"
        "wrong = {n: v for n, v in found.items() if v != expected[n]}\n"
        "print('installed:', json.dumps(found))\n"
        "sys.exit(f'not the versions built here: {wrong}' if wrong else 0)\n",
        external=True,
    )
    work = tmp / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    with session.chdir(work):  # the commands' default files (./market_data.db) land here
        for command in INDEX_COMMANDS[package]:
            session.run(str(venv / "bin" / command[0]), *command[1:], external=True)


def _version_of(package: str) -> str:
    project = nox.project.load_toml(ROOT / "packages" / package / "pyproject.toml")["project"]
    return str(project["version"])


@nox.session(reuse_venv=False)  # fresh: nothing left over from an earlier install
@nox.parametrize("package", PACKAGES, ids=[p.removeprefix("market-data-") for p in PACKAGES])
def contracts(session: nox.Session, package: str) -> None:
    """Contract tests of a package installed from its wheel, against two schema sets.

    A fresh environment holds only core's wheel, the wheels of the project packages it depends
    on, its extras and its test group: ``pip install`` of that package alone works, and what
    it puts on the wire equals core's committed schemas, the current ones and the previous
    release's (``MD_CONTRACTS_DIR``). Core's own run checks that the code generates exactly
    the committed schemas and stays compatible with every release of its major."""
    needed = _project_closure(package, CONTRACT_EXTRAS[package])
    wheels = {name: _build_wheel(session, name) for name in needed}
    extras = ",".join(CONTRACT_EXTRAS[package])
    own = f"{wheels.pop(package)}[{extras}]" if extras else str(wheels.pop(package))
    pyproject = nox.project.load_toml(ROOT / "packages" / package / "pyproject.toml")
    group = nox.project.dependency_groups(pyproject, "test")
    session.install(
        own,
        *map(str, wheels.values()),  # by path: core never comes from an index
        *group,  # every test group holds jsonschema, which the contract checks need
    )
    modules = [name.replace("-", "_") for name in needed]
    session.run(
        "python",
        "-c",
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    path = importlib.import_module(name).__file__\n"
        "    if 'site-packages' not in path:\n"
        "        sys.exit(f'{name} imported from {path}, not from its wheel')\n"
        "    print(f'{name} from {path}')\n",
    )
    suite = f"packages/{package}/tests/contracts"
    if package == "market-data-core":
        session.run(*PYTEST, suite, *session.posargs)
        return
    previous = _previous_release()
    for schemas in (CONTRACTS, previous):
        session.log(f"{package}: contract tests against {schemas.relative_to(ROOT)}")
        session.run(*PYTEST, suite, *session.posargs, env={"MD_CONTRACTS_DIR": str(schemas)})


def wheelhouse() -> Path:
    """The directory of this ``nox`` process's wheels, one subdirectory per package, removed
    when the process ends: every session installs the same build."""
    global _WHEELHOUSE  # noqa: PLW0603 - one per process, made on first use
    if _WHEELHOUSE is None:
        _WHEELHOUSE = Path(tempfile.mkdtemp(prefix="md-wheels-"))
        atexit.register(shutil.rmtree, _WHEELHOUSE, ignore_errors=True)
    return _WHEELHOUSE


_WHEELHOUSE: Path | None = None


def _build_wheel(session: nox.Session, package: str) -> Path:
    """``package``'s wheel, built the first time a session of this process asks for it."""
    out = wheelhouse() / package
    if not list(out.glob("*.whl")):
        session.run(
            "uv", "build", "--package", package, "--wheel", "--out-dir", str(out), silent=True
        )
    (built,) = out.glob("*.whl")
    return built


def _project_closure(package: str, extras: list[str]) -> list[str]:
    """``package`` and every project package it needs (with ``extras``), core first."""
    found: dict[str, None] = {}
    pending = [(package, tuple(extras))]
    while pending:
        name, wanted = pending.pop()
        found[name] = None
        project = nox.project.load_toml(ROOT / "packages" / name / "pyproject.toml")["project"]
        requirements = list(project.get("dependencies", []))
        for extra in wanted:
            requirements += project.get("optional-dependencies", {})[extra]
        for requirement in requirements:
            match = re.match(r"\s*(market-data-[a-z]+)\s*(?:\[([^\]]*)\])?", requirement)
            if match and match[1] not in found:
                more = tuple(e.strip() for e in (match[2] or "").split(",") if e.strip())
                pending.append((match[1], more))
    return sorted(found, key=PACKAGES.index)


def _previous_release() -> Path:
    """The newest release of the current major older than the current contract version
    under docs/contracts/releases/ (the current version's own snapshot while it is the
    first release of its major)."""
    current = json.loads((CONTRACTS / "index.json").read_text())["contract_version"]

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    major = version(current)[0]
    releases = sorted(
        (p for p in (CONTRACTS / "releases").iterdir() if version(p.name)[0] == major),
        key=lambda p: version(p.name),
    )
    older = [p for p in releases if version(p.name) < version(current)]
    if not releases:
        msg = f"no release of contract major {major} under docs/contracts/releases"
        raise RuntimeError(msg)
    return (older or releases)[-1]


@nox.session
def integration(session: nox.Session) -> None:
    sync(session, "--all-packages", "--all-extras", "--group", "test")
    session.run(*PYTEST, *workers("integration"), "integration-tests/tests", *session.posargs)


@nox.session(default=False)
def stress(session: nox.Session) -> None:
    """Long repetitions kept out of the default run: the store's version rule under fire,
    larger (``MD_STRESS_SCALE``) and the issue's reproduction 20 times per way
    (``MD_STRESS_RUNS``); the API fuzzing with 100 examples per operation and mode
    (``MD_FUZZ_EXAMPLES``; the default run has 12)."""
    sync(session, "--all-packages", "--all-extras", "--group", "test")
    env = {"MD_STRESS_SCALE": "4", "MD_STRESS_RUNS": "20", "MD_FUZZ_EXAMPLES": "100"}
    session.run(
        *PYTEST,
        "packages/market-data-store/tests/backends/test_versions.py",
        "integration-tests/tests/test_versions_pipeline.py",
        "integration-tests/tests/test_api_fuzz.py",
        "--timeout=3600",  # 20 runs of a job in one test: longer than a test's usual limit
        *session.posargs,
        env=env,
    )


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (not part of the default run): they print figures and ratios."""
    sync(session, "--all-packages", "--all-extras", "--group", "test", "--group", "bench")
    env = {"PYTHONHASHSEED": "0", "MD_BENCH_PYTHON": user_environment(session)}
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs, env=env)


def user_environment(session: nox.Session) -> str:
    """A virtualenv with the packages installed as a user installs them (``pip install
    'market-data-pipeline[postgres,http,redis]'``, pinned by uv.lock): no test tools, so no pandas,
    which pyarrow imports whenever it is there. Whole-process benchmarks run in it, their
    baselines too (the ``bench`` group: ADBC's drivers, polars), so that both sides of each
    ratio import from the same installed packages."""
    where = Path(session.create_tmp()) / "user-env"
    python = where / "bin" / "python"
    session.run(
        "uv",
        "venv",
        "--quiet",
        "--clear",
        "--python",
        str(Path(session.bin) / "python"),
        str(where),
    )
    pins = where / "requirements.txt"
    session.run(
        "uv", "export", "--frozen", "--quiet", "--no-dev", "--no-hashes", "--no-emit-workspace",
        "--package", "market-data-pipeline", "--extra", "postgres", "--extra", "http",
        "--extra", "redis",
        "--output-file", str(pins),
    )  # fmt: skip
    baselines = where / "baselines.txt"  # ADBC's drivers and polars: the same interpreter
    session.run(
        "uv", "export", "--frozen", "--quiet", "--only-group", "bench", "--no-hashes",
        "--no-emit-workspace", "--output-file", str(baselines),
    )  # fmt: skip
    install = ("uv", "pip", "install", "--quiet", "--python", str(python))
    session.run(*install, "--requirements", str(pins), "--requirements", str(baselines))
    session.run(*install, "--no-deps", *(str(ROOT / "packages" / p) for p in PACKAGES[:3]))
    return str(python)

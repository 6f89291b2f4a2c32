"""Sessions for the whole workspace. ``uv run nox`` runs the default ones (what CI runs).

- lint: ruff check and ruff format --check
- typecheck: mypy --strict on every package's src/
- tests(package=...): each package's tests, in an environment synced from uv.lock
- wheel: market-data-core built as a wheel, installed alone (no workspace), its tests run
- contracts: every package's tests/contracts (schemas committed under docs/contracts)
- integration: integration-tests/ against real servers (redis-server; PostgreSQL later)
- bench (not default): benchmarks that print ratios against a baseline of the same run
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "no" if os.environ.get("CI") else "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests", "wheel", "contracts", "integration"]

ROOT = Path(__file__).parent
PACKAGES = [
    "market-data-core",
    "market-data-store",
    "market-data-pipeline",
    "market-data-orchestrator",
]
PYTEST = ["pytest", "-p", "no:cacheprovider"]


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
    sync(session, "--package", package, "--all-extras", "--group", "test")
    session.run(*PYTEST, f"packages/{package}/tests", *session.posargs)


@nox.session
def wheel(session: nox.Session) -> None:
    """Build market-data-core's wheel and test it installed alone, outside the workspace."""
    dist = Path(session.create_tmp()) / "dist"
    session.run("uv", "build", "--package", "market-data-core", "--wheel", "--out-dir", str(dist))
    (built,) = dist.glob("market_data_core-*.whl")
    pyproject = nox.project.load_toml(ROOT / "packages/market-data-core/pyproject.toml")
    session.install(f"{built}[redis]", *nox.project.dependency_groups(pyproject, "test"))
    session.run(
        "python",
        "-c",
        "import market_data_core, sys; p = market_data_core.__file__;"
        " sys.exit(0 if 'site-packages' in p else f'imported from {p}, not the wheel')",
    )
    session.run(*PYTEST, "packages/market-data-core/tests", *session.posargs)


@nox.session
def contracts(session: nox.Session) -> None:
    """Each package's tests/contracts: what it puts on the wire equals core's schemas."""
    suites = [f"packages/{p}/tests/contracts" for p in PACKAGES]
    suites = [suite for suite in suites if (ROOT / suite).is_dir()]
    sync(session, "--all-packages", "--all-extras", "--group", "test")
    session.run(*PYTEST, *suites, *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    sync(session, "--all-packages", "--all-extras", "--group", "test")
    session.run(*PYTEST, "integration-tests/tests", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (not part of the default run): they print figures and ratios."""
    sync(session, "--all-packages", "--all-extras", "--group", "test")
    for script in sorted((ROOT / "bench").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs, env={"PYTHONHASHSEED": "0"})

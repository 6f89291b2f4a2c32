"""A new user's first `uv run mdp run ...` installs what the main job needs, not the dev
tools: the workspace's default dependency group is `run` (the packages with the extras
the docs use, and nox for the test command, whose sessions make their own environments)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = {"mypy", "ruff", "hypothesis", "pytest", "pytest-asyncio", "pandas", "pandas-stubs",
             "types-pyyaml", "jsonschema", "httpx2", "playwright"}  # fmt: skip


def _default_install() -> set[str]:
    """What `uv run` installs in a fresh clone (uv.lock, the default groups)."""
    uv = shutil.which("uv")
    assert uv is not None, "pip install uv"
    exported = subprocess.run(
        [uv, "export", "--locked", "--no-hashes", "--format", "requirements-txt"],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    return {m[1].lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", exported, re.M)}


def test_the_first_run_installs_no_dev_tool() -> None:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert workspace["tool"]["uv"]["default-groups"] == ["run"]
    installed = _default_install()
    assert not installed & DEV_TOOLS, installed & DEV_TOOLS
    assert {"nox", "pyarrow", "asyncpg", "redis"} <= installed  # the test command, the docs
    assert len(installed) < 70, len(installed)  # was 84 with the dev tools


def test_the_dev_group_still_has_every_tool() -> None:
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    dev = {item["include-group"] for item in groups["dev"] if isinstance(item, dict)}
    assert dev == {"run", "lint", "test", "typecheck"}

"""The docs that span every package stay true: the configuration reference is what the
settings classes say, and the commands of the quickstart exist with the flags it uses."""

import difflib
import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
from pydantic import BaseModel, SecretStr

from market_data_orchestrator.cli import app as mdo_app
from market_data_orchestrator.deployment import Deployment
from market_data_pipeline.cli import app as mdp_app
from market_data_pipeline.settings import UnifiedRuntimeSettings
from market_data_store.cli import app as mds_app
from market_data_store.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REGENERATE = "uv run python docs/gen_config_reference.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_config_reference", DOCS / "gen_config_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_is_generated_from_the_settings() -> None:
    expected = _generator().render()
    committed = (DOCS / "configuration.md").read_text(encoding="utf-8")
    if committed != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/configuration.md (committed)",
                    "docs/configuration.md (from the code)",
                )
            )[:40]
        )
        pytest.fail(f"docs/configuration.md is stale: run `{REGENERATE}`\n{diff}")


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """A model and every model nested in its fields (the deployment file's tree)."""
    found = [model]
    for field in model.model_fields.values():
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found += [m for m in _models(candidate) if m not in found]
    return found


@pytest.mark.parametrize(
    "model", [StoreSettings, UnifiedRuntimeSettings, *_models(Deployment)], ids=lambda m: m.__name__
)
def test_every_setting_says_what_it_does(model: type[BaseModel]) -> None:
    sections = {name for name, f in model.model_fields.items() if _nested(f.annotation)}
    bare = [
        name
        for name, field in model.model_fields.items()
        if not field.description and name not in sections
    ]
    assert not bare, f"{model.__name__}: add Field(description=...) to {bare}, then `{REGENERATE}`"


def _nested(annotation: Any) -> bool:
    return any(
        isinstance(t, type) and issubclass(t, BaseModel)
        for t in (annotation, *getattr(annotation, "__args__", ()))
    )


def test_the_reference_lists_every_variable_and_no_secret() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for prefix, cls in (("MDS_", StoreSettings), ("MDP_", UnifiedRuntimeSettings)):
        for name, field in cls.model_fields.items():
            row = next((r for r in text.splitlines() if f"| `{prefix}{name.upper()}` |" in r), None)
            assert row is not None, f"{prefix}{name.upper()} is missing from docs/configuration.md"
            if isinstance(field.default, SecretStr):
                assert "`**********` (secret)" in row, row
                assert field.default.get_secret_value() not in row, row


def _commands(app: typer.Typer) -> dict[str, set[str]]:
    """Each leaf command of a CLI (``dlq replay``) and the options it takes."""
    found: dict[str, set[str]] = {}

    def walk(command: Any, prefix: str) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, f"{prefix} {name}".strip())
            return
        found[prefix] = {o for p in command.params for o in getattr(p, "opts", ())} | {"--help"}

    walk(typer.main.get_command(app), "")
    return found


CLIS = {"mds": mds_app, "mdp": mdp_app, "mdo": mdo_app}


def _documented_commands(path: Path) -> list[list[str]]:
    """The ``mds``/``mdp``/``mdo`` invocations in the fenced shell blocks of a page."""
    blocks = re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(), flags=re.S)
    calls = []
    for raw in "\n".join(blocks).replace("\\\n", " ").splitlines():
        line = raw.split(" #", 1)[0].strip()
        words = shlex.split(line) if line else []
        while words and ("=" in words[0] or words[0] in {"uv", "run", "exec", "&"}):
            words = words[1:]
        if words and words[0] in CLIS:
            calls.append([w for w in words if w != "&"])
    return calls


@pytest.mark.parametrize("page", ["quickstart.md", "operations/runbook.md"])
def test_documented_commands_exist_with_their_options(page: str) -> None:
    calls = _documented_commands(DOCS / page)
    assert calls, f"no mds/mdp/mdo commands found in docs/{page}"
    for words in calls:
        commands = _commands(CLIS[words[0]])
        name = next(
            (
                c
                for c in sorted(commands, key=len, reverse=True)
                if words[1:][: len(c.split())] == c.split()
            ),
            None,
        )
        assert name is not None, f"docs/{page}: `{' '.join(words)}`: no such command"
        options = {w.split("=", 1)[0] for w in words if w.startswith("--")}
        assert options <= commands[name], (
            f"docs/{page}: `{' '.join(words)}`: {sorted(options - commands[name])} are not options"
            f" of `{words[0]} {name}`"
        )
    print(f"\ndocs/{page}: {len(calls)} commands checked")


def _section_commands(page: Path, heading: str) -> list[str]:
    """The shell lines of the fenced bash blocks under ``heading`` (up to the next one)."""
    text = page.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    blocks = re.findall(r"```bash\n(.*?)```", text[start : end if end > 0 else None], re.S)
    return [line.split(" #", 1)[0].strip() for b in blocks for line in b.splitlines() if line]


def test_the_quickstart_postgresql_step_runs_as_written(tmp_path: Path) -> None:
    """Step 2 of docs/quickstart.md, line by line, against a real PostgreSQL (the URL of
    the test server in place of the example's), from a fresh directory."""
    import asyncio
    import os
    import subprocess
    import sys

    from market_data_store.testing import PostgresServer

    lines = _section_commands(DOCS / "quickstart.md", "## 2. PostgreSQL")
    assert any("mdp run" in line for line in lines), lines
    (tmp_path / "examples").mkdir()
    example = (ROOT / "examples" / "quickstart.yaml").read_bytes()
    (tmp_path / "examples" / "quickstart.yaml").write_bytes(example)
    outputs: dict[str, str] = {}
    bin_dir = Path(sys.executable).parent
    with PostgresServer(password="doc-pw-2") as server:
        url = asyncio.run(server.create_database("market_data"))
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        for line in lines:
            if line.startswith("export "):
                name = line.split()[1].split("=", 1)[0]
                env[name] = url.secret()  # the example's URL -> the test server's
                continue
            words = shlex.split(line.replace('"$MDS_DATABASE_URL"', url.secret()))
            while words and "=" in words[0]:
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            assert words[:2] == ["uv", "run"], line
            done = subprocess.run(
                words[2:], check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, f"`{line}` failed:\n{done.stdout}\n{done.stderr}"
            assert "Traceback" not in done.stderr, line
            outputs[words[2]] = done.stdout
    assert "bars 9,360 written, 9,360 new" in " ".join(outputs["mdp"].split())  # into PostgreSQL
    # and read back: --limit 2 (one source: named once, in the table's title)
    shown = outputs["mds"]
    assert "(source quickstart)" in shown, shown
    assert len(re.findall(r"^│ \d{4}-\d\d-\d\dT", shown, re.MULTILINE)) == 2, shown


def test_uv_run_in_a_clone_has_the_extras_the_docs_use() -> None:
    """``uv run mds migrate`` on PostgreSQL needs the postgres extra in a fresh clone's
    ``uv run`` environment: the root's default group (``run``) must pull it in."""
    import tomllib

    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = root["tool"]["uv"].get("default-groups", ["dev"])
    wanted = [r for g in groups for r in root["dependency-groups"][g] if isinstance(r, str)]
    assert any(r.startswith("market-data-store[") and "postgres" in r for r in wanted), wanted
    assert any(r.startswith("market-data-pipeline[") and "redis" in r for r in wanted), wanted


def test_every_pip_install_with_extras_is_quoted_for_zsh() -> None:
    """``pip install pkg[extra]`` fails in zsh (the brackets are a glob): every install
    line of the docs and READMEs quotes what has brackets."""
    unquoted = []
    for path in sorted({*ROOT.glob("*.md"), *DOCS.rglob("*.md"), *ROOT.glob("packages/*/*.md")}):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for command in re.findall(r"pip install ([^`\n]*)", line):
                unquoted += [
                    f"{path.relative_to(ROOT)}:{number}: {word}"
                    for word in command.split()
                    if "[" in word and word[0] not in "'\""
                ]
    assert not unquoted, unquoted


def _python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a page, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), re.MULTILINE | re.DOTALL)


def test_the_read_your_data_page_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/reading.md, every Python block in one namespace, in a fresh directory holding
    the store the quickstart writes, with Binance's trades and quotes of examples/data."""
    import asyncio
    import contextlib
    import io
    import os
    import subprocess
    import sys

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from market_data_core.columns import TIMESTAMP
    from market_data_store.backends.sqlite import SqliteBackend
    from market_data_store.columnar import Kind, conform
    from market_data_store.dsn import DatabaseUrl

    shutil_example = (ROOT / "examples" / "quickstart.yaml").read_bytes()
    (tmp_path / "quickstart.yaml").write_bytes(shutil_example)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["mdp", "run", "-q", "quickstart.yaml"], check=False, cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    data = ROOT / "examples" / "data"
    raw = pq.read_table(data / "btcusdt-trades.parquet")
    trades = pa.table({
        "symbol": ["BTC/USDT"] * raw.num_rows, "ts": raw["timestamp"].cast(TIMESTAMP),
        "price": raw["price"], "size": raw["quantity"],
        "trade_id": raw["trade_id"].cast(pa.string()), "ordinal": np.arange(raw.num_rows),
    })  # fmt: skip
    raw = pq.read_table(data / "btcusdt-quotes.parquet")
    quotes = pa.table({
        "symbol": raw["symbol"], "ts": raw["timestamp"].cast(TIMESTAMP),
        "bid": raw["bid"], "ask": raw["ask"], "bid_size": raw["bid_size"],
        "ask_size": raw["ask_size"], "ordinal": np.arange(raw.num_rows),
    })  # fmt: skip

    async def add_ticks() -> None:
        backend = SqliteBackend(DatabaseUrl.parse(f"sqlite:///{tmp_path / 'market_data.db'}"))
        await backend.open()
        for table, kind in ((trades, Kind.TRADES), (quotes, Kind.QUOTES)):
            await backend.write_table(kind, conform(table, kind))
        await backend.close()

    asyncio.run(add_ticks())
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(DOCS / "reading.md")
    assert len(blocks) >= 6, "the page lost its examples"
    namespace: dict[str, Any] = {"__name__": "reading"}
    printed = io.StringIO()
    for number, block in enumerate(blocks, start=1):
        with contextlib.redirect_stdout(printed):
            try:
                exec(compile(block, f"docs/reading.md block {number}", "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"docs/reading.md block {number} failed: {exc!r}\n{block}")
    output = printed.getvalue()
    assert namespace["bars"]["symbol"].nunique() == 20  # every quickstart symbol, one line
    assert len(namespace["frame"]) == namespace["table"].num_rows == 2 * 60
    assert namespace["tape"]["bid"].notna().sum() > 1900  # trades before the first quote: none
    assert namespace["report"].written > 0
    assert "True" in output  # as_known_at now equals the current data
    assert "('BTC/USDT', 2001)" in output  # DuckDB read the export

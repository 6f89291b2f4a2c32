"""``mdp``: what a user sees on the command line."""

import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from market_data_pipeline.cli import app

ROOT = Path(__file__).resolve().parents[3]
runner = CliRunner()


@pytest.fixture
def quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the example writes ./market_data.db
    return shutil.copy(ROOT / "examples" / "quickstart.yaml", tmp_path / "quickstart.yaml")


def test_quickstart_runs_prints_where_it_wrote_and_is_idempotent(quickstart: Path) -> None:
    first = runner.invoke(app, ["run", str(quickstart)])
    assert first.exit_code == 0, first.output
    assert "store sqlite:///./market_data.db: bars 0 -> " in first.output
    assert (quickstart.parent / "market_data.db").exists()
    second = runner.invoke(app, ["run", str(quickstart), "--json"])
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    before, after = summary["store"]["tables"]["bars"]
    assert before == after > 20 * 390  # 20 symbols x 390 one-minute bars, plus 5m bars
    assert summary["state"] == "completed"


def test_database_flag_beats_the_file(quickstart: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    result = runner.invoke(
        app, ["run", str(quickstart), "--json", "--database-url", f"sqlite:///{other}"]
    )
    assert result.exit_code == 0, result.output
    assert other.exists()
    assert not (tmp_path / "market_data.db").exists()


def test_validate_names_the_line_of_a_bad_node(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "nodes:\n  - {id: a, type: synthetic}\n  - id: b\n    type: resampel\nedges: [a -> b]\n"
    )
    result = runner.invoke(app, ["validate", str(config)])
    assert result.exit_code == 2
    assert "bad.yaml:3" in result.output
    assert "'b'" in result.output
    ok = runner.invoke(app, ["validate", str(ROOT / "examples" / "quickstart.yaml")])
    assert ok.exit_code == 0
    assert "4 nodes, 4 edges" in ok.output


def test_list_shows_every_kind() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("synthetic", "replay", "resample_ohlc", "hash_partition", "store", "file"):
        assert name in result.output


def test_graph_as_mermaid() -> None:
    result = runner.invoke(
        app, ["graph", str(ROOT / "examples" / "quickstart.yaml"), "--format", "mermaid"]
    )
    assert result.exit_code == 0
    assert result.output.startswith("flowchart LR")
    assert "trades --> bars_1m" in result.output


def test_replay_a_real_file_to_stdout() -> None:
    result = runner.invoke(
        app,
        [
            "replay",
            str(ROOT / "examples" / "data" / "usdjpy-ticks.csv"),
            "--kind",
            "quotes",
            "--symbol",
            "USD/JPY",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "USD/JPY" in result.output


def test_help_names_the_environment_variables() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert "MDP_DATABASE_URL" in result.output
    assert "MDP_METRICS_PORT" in result.output


def test_the_committed_component_reference_is_current() -> None:
    result = runner.invoke(app, ["list", "--markdown"])
    assert result.exit_code == 0
    committed = (ROOT / "docs" / "components.md").read_text()
    assert result.stdout == committed, (
        "docs/components.md is stale: uv run mdp list --markdown > docs/components.md"
    )


def test_a_missing_postgres_extra_is_one_line_naming_the_install(
    quickstart: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "asyncpg" else real(name, *a)
    )
    url = "postgresql://md:pw@127.0.0.1:1/market_data"
    result = runner.invoke(app, ["run", str(quickstart), "--database-url", url])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "PostgreSQL needs asyncpg: pip install 'market-data-store[postgres]'" in lines[0]


def test_version_names_the_distribution() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"market-data-pipeline {version('market-data-pipeline')}\n"


HEAVY = ("pyarrow", "numpy", "structlog", "yaml", "pydantic_settings", "prometheus_client",
         "redis", "httpx", "sqlalchemy", "market_data_core", "market_data_pipeline.runtime",
         "market_data_pipeline.registry", "market_data_store")  # fmt: skip


def test_help_and_version_import_no_engine() -> None:
    # In a fresh interpreter, as `mdp --help` runs: the engine loads only for a command.
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from market_data_pipeline.cli import app\n"
        "for args in (['--help'], ['--version'], ['run', '--help'], ['list', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert [m for m in HEAVY if m in loaded] == []
    assert "market_data_pipeline.cli" in loaded


@pytest.mark.parametrize("command", [[], ["run"], ["validate"], ["list"], ["graph"], ["replay"]])
def test_help_shows_a_flag_without_a_value(command: list[str]) -> None:
    # `--json <bool>` (Typer's Rich panels) reads as if the flag wanted a value; it takes none
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    flags = {"run": ("--json", "--control", "-q, --quiet"), "list": ("--markdown",)}
    for flag in flags.get(command[0] if command else "", ("--help",)):
        assert any(line.strip().split("  ")[0] == flag for line in result.output.splitlines())


def test_flags_take_no_value(quickstart: Path) -> None:
    result = runner.invoke(app, ["run", str(quickstart), "-q", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "completed"
    result = runner.invoke(app, ["list", "--markdown", "true"])
    assert result.exit_code == 2  # not a value of --markdown: an unexpected argument

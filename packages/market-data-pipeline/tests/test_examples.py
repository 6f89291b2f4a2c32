"""Every example config in examples/ validates, runs to completion, and reruns idempotently."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from market_data_pipeline.cli import app

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
runner = CliRunner()


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_and_a_second_run_adds_nothing(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # data paths are repo-relative
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["run", f"examples/{config.name}", "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["state"] == "completed"
    sinks = [n for n in summary["nodes"].values() if n["kind"] == "sink"]
    assert sum(n["in"] for n in sinks) > 0
    second = json.loads(runner.invoke(app, ["run", f"examples/{config.name}", "--json"]).stdout)
    for table, (before, after) in second["store"]["tables"].items():
        assert before == after, f"{table}: a rerun of {config.name} changed the store"
        assert after == summary["store"]["tables"][table][1]


def test_there_are_examples() -> None:
    assert {p.stem for p in EXAMPLES} >= {"quickstart", "replay_real", "partitioned", "router"}

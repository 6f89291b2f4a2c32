"""``mdp``: what a user sees on the command line."""

import json
import re
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
    said = " ".join(first.stdout.split())
    assert (
        "store sqlite:///./market_data.db: bars 9,360 written, 9,360 new (0 -> 9,360 rows)"
    ) in said
    assert (quickstart.parent / "market_data.db").exists()
    again = runner.invoke(app, ["run", str(quickstart), "-q"])
    assert again.exit_code == 0, again.output
    said = " ".join(again.stdout.split())
    assert (  # written = rows sent and stored, new = rows the store did not have
        "store sqlite:///./market_data.db: bars 9,360 written, 0 new: the store had them all"
        " (9,360 -> 9,360 rows)"
    ) in said
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


def test_a_replay_into_a_file_shows_its_progress_and_ends_at_100_percent(tmp_path: Path) -> None:
    """`mdp replay` as `mdp run`: on a terminal, the live progress on stderr and a last
    line with percent, rows, rate and elapsed time, within 80 columns, even for a file
    read before the first redraw; the bars in the file."""
    from market_data_core.testing.terminal import run_in_terminal

    data = ROOT / "examples" / "data" / "btcusdt-trades.parquet"
    out = tmp_path / "bars.csv"
    argv = ["replay", str(data), "--symbol", "BTCUSDT", "--to", str(out)]
    shown = run_in_terminal([sys.executable, "-m", "market_data_pipeline.cli", *argv])
    assert shown.returncode == 0, shown.text
    final = [line.strip() for line in shown.lines if line.strip().startswith("replay: ")]
    assert final, shown.text
    assert re.fullmatch(
        r"replay: completed, 100%, 2,001 rows, [\d,]+ rows/s, elapsed \d+\.\d s", final[-1]
    ), final[-1]
    assert all(len(line) <= 80 for line in shown.lines), shown.text
    bars = out.read_text().splitlines()
    assert len(bars) > 1
    assert bars[1].split(",")[1] == '"BTCUSDT"'
    quiet = run_in_terminal([sys.executable, "-m", "market_data_pipeline.cli", *argv, "-q"])
    assert quiet.returncode == 0, quiet.text
    assert not any(line.strip().startswith("replay: ") for line in quiet.lines), quiet.text


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


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("notaurl://x", "invalid database URL (--database-url or MDP_DATABASE_URL): database URL"
         " scheme 'notaurl' is not supported: use sqlite or postgresql"),
        ("postgresql://md:pw@127.0.0.1:1/market_data", "cannot open the store's database:"
         " PostgreSQL connect failed at postgresql://md:***@127.0.0.1:1/market_data"),
        ("sqlite:///{tmp}/no/such/dir/x.db", "the directory of the SQLite database"
         " {tmp}/no/such/dir/x.db does not exist: create {tmp}/no/such/dir or choose another"),
    ],
)  # fmt: skip
def test_a_bad_database_url_is_one_line_naming_it_once(
    quickstart: Path, tmp_path: Path, url: str, said: str
) -> None:
    url, said = url.format(tmp=tmp_path), said.format(tmp=tmp_path)
    result = runner.invoke(app, ["run", str(quickstart), "--database-url", url])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert said in " ".join(result.output.split())
    assert result.output.count("127.0.0.1:1/market_data") <= 1  # the URL once
    assert "pw@" not in result.output
    assert not (tmp_path / "no").exists()  # no directory made for a typo


def test_version_names_the_distribution() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"market-data-pipeline {version('market-data-pipeline')}\n"


HEAVY = ("pyarrow", "numpy", "structlog", "yaml", "pydantic_settings", "prometheus_client",
         "redis", "httpx", "sqlalchemy", "market_data_core.bars", "market_data_pipeline.runtime",
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


# -- progress: what `mdp run` shows while a finite job runs (issue 25, item 4) -----------------

PACED = (
    "name: paced\nnodes:\n"
    "  - {id: trades, type: synthetic, params: {count: 20000, batch_size: 500, rate: 10000}}\n"
    "  - {id: sink, type: 'null'}\nedges: [trades -> sink]\n"
)


def test_a_synthetic_day_shows_percent_rate_and_eta_then_the_time_it_took(tmp_path: Path) -> None:
    """In an 80-column terminal: the configured count is the total (percent and ETA while
    it runs), the last line says how long it took."""
    from market_data_core.testing.terminal import run_in_terminal

    (tmp_path / "paced.yaml").write_text(PACED)
    shown = run_in_terminal(
        [sys.executable, "-m", "market_data_pipeline.cli", "run", str(tmp_path / "paced.yaml")],
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.text
    lines = [line.strip() for line in shown.lines]
    running = [line for line in lines if re.search(r"\bETA \d+\.\d s\b", line)]
    assert running, shown.text  # rows, rate, ETA and elapsed under the bar while it runs
    assert all(re.search(r"[\d,]+ rows +[\d,]+ rows/s", line) for line in running)
    bars = [line for line in lines if line.startswith("paced ") and line.endswith("%")]
    percents = {int(line.rsplit(" ", 1)[-1].rstrip("%")) for line in bars}
    assert any(0 < p < 100 for p in percents), bars  # the bar moved through the job
    final = [line for line in lines if line.startswith("paced: completed")]
    assert final, shown.text
    assert re.fullmatch(
        r"paced: completed, 100%, 20,000 rows, [\d,]+ rows/s, elapsed \d+\.\d s", final[-1]
    ), final[-1]
    assert all(len(line) <= 80 for line in shown.lines), shown.text


def test_a_paced_replay_of_a_file_shows_percent_from_the_bytes_read(tmp_path: Path) -> None:
    """A CSV file's size is its total; the bytes read so far (in the share of the rows
    parsed from them that were emitted) the part done, so a paced replay moves steadily."""
    from market_data_core.testing.terminal import run_in_terminal

    rows = "".join(f"2024-01-02T14:30:{i // 1000:02d}.{i % 1000:03d}Z,{100 + i / 100},1\n"
                   for i in range(2000))  # fmt: skip
    (tmp_path / "trades.csv").write_text("ts,price,size\n" + rows)
    (tmp_path / "replay.yaml").write_text(
        "name: replay\nnodes:\n"
        "  - {id: trades, type: replay, params: {path: trades.csv, symbol: AAPL, speed: 1,"
        " batch_size: 100}}\n"
        "  - {id: sink, type: 'null'}\nedges: [trades -> sink]\n"
    )
    shown = run_in_terminal(
        [sys.executable, "-m", "market_data_pipeline.cli", "run", "replay.yaml"], cwd=tmp_path
    )
    assert shown.returncode == 0, shown.text
    lines = [line.strip() for line in shown.lines]
    bars = [line for line in lines if line.startswith("replay ") and line.endswith("%")]
    percents = {int(line.rsplit(" ", 1)[-1].rstrip("%")) for line in bars}
    assert any(10 <= p <= 90 for p in percents), bars
    assert any(re.search(r"\bETA \d+\.\d s\b", line) for line in lines), shown.text
    assert any(line.startswith("replay: completed, 100%, 2,000 rows") for line in lines)


def test_off_a_terminal_progress_is_a_log_line_now_and_then_without_carriage_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipe or a CI log gets a `pipeline progress` record (a JSON line like the other
    log records there) every LINE_INTERVAL seconds, and one at the end."""
    from market_data_pipeline import _progress

    monkeypatch.setattr(_progress, "LINE_INTERVAL", 0.3)
    (tmp_path / "paced.yaml").write_text(PACED)
    result = runner.invoke(app, ["run", str(tmp_path / "paced.yaml")])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    records = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and "pipeline progress" in line
    ]
    assert len(records) >= 3, result.stderr  # a 2-second job: several, then the last
    running, last = records[:-1], records[-1]
    assert all(0 <= r["percent"] < 100 and r["eta_seconds"] is not None for r in running)
    assert last["state"] == "completed"
    assert last["percent"] == 100.0
    assert last["rows"] == 20_000
    assert last["elapsed_seconds"] > 1


def test_without_a_known_total_progress_shows_rate_and_elapsed_only() -> None:
    from market_data_pipeline._progress import Snapshot, _fraction
    from market_data_pipeline.components import Extent

    live = Snapshot(rows=5_000, fraction=_fraction([Extent(10, None), None]), elapsed=2.0)
    assert live.parts() == ["5,000 rows", "2,500 rows/s", "elapsed 2.0 s"]
    known = Snapshot(rows=5_000, fraction=_fraction([Extent(250, 1000, "bytes")]), elapsed=2.0)
    assert known.parts() == ["25%", "5,000 rows", "2,500 rows/s", "ETA 6.0 s", "elapsed 2.0 s"]
    mixed = _fraction([Extent(1, 2, "rows"), Extent(0, 10, "bytes")])
    assert mixed == 0.25  # units that do not add up: the mean of the fractions


def test_a_run_through_the_store_service_says_what_it_wrote_and_why_not_what_was_new(
    tmp_path: Path,
) -> None:
    from market_data_store.testing import StoreService

    with StoreService(tmp_path) as service:
        (tmp_path / "job.yaml").write_text(
            "name: via-service\nnodes:\n"
            "  - {id: trades, type: synthetic, params: {count: 3000, symbols: 2}}\n"
            "  - {id: bars, type: resample_ohlc, params: {timeframe: 1m}}\n"
            f"  - {{id: store, type: store, params: {{url: '{service.url}'}}}}\n"
            "edges: [trades -> bars, bars -> store]\n"
        )
        result = runner.invoke(app, ["run", str(tmp_path / "job.yaml"), "-q"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    written = re.search(rf"store {re.escape(service.url)} \(store\): ([\d,]+) written", said)
    assert written, said
    assert int(written.group(1).replace(",", "")) > 0
    assert "how many were new is not known: the service answers with the rows it stored" in said

"""``mds`` end to end on a real SQLite file."""

import json
import re
import subprocess
import sys
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from market_data_core.testing import T0, make_bar
from market_data_store.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "MDS_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "MDS_DEAD_LETTER_PATH": str(tmp_path / "dlq.ndjson"),
        "MDS_FLUSH_INTERVAL": "0.01",
    }


def test_migrate_then_ingest_is_idempotent_then_query(tmp_path: Path, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["migrate"], env=env)
    assert result.exit_code == 0, result.output
    assert "is at revision 0002" in result.output
    bars = [make_bar(start=T0 + timedelta(minutes=i), close=185.0 + i / 100) for i in range(50)]
    path = tmp_path / "bars.ndjson"
    path.write_text("".join(bar.model_dump_json() + "\n" for bar in bars))
    for _ in range(2):
        result = runner.invoke(app, ["ingest", str(path), "--table", "bars"], env=env)
        assert result.exit_code == 0, result.output
        assert "wrote 50 bars" in result.output
    result = runner.invoke(
        app, ["query", "AAPL", "--timeframe", "1m", "--json", "--limit", "1000"], env=env
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    assert len(lines) == 50


@pytest.mark.parametrize("output_format", ["csv", "arrow", "parquet", "json"])
def test_query_writes_each_format(tmp_path: Path, env: dict[str, str], output_format: str) -> None:
    import io

    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0
    bars = [make_bar(start=T0 + timedelta(minutes=i), close=185.0 + i / 100) for i in range(20)]
    path = tmp_path / "bars.ndjson"
    path.write_text("".join(bar.model_dump_json() + "\n" for bar in bars))
    assert runner.invoke(app, ["ingest", str(path), "--table", "bars"], env=env).exit_code == 0
    target = tmp_path / f"out.{output_format}"
    args = ["query", "AAPL", "--format", output_format, "--output", str(target), "--limit", "1000"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "wrote 20 rows" in result.output
    data = target.read_bytes()
    if output_format == "csv":
        closes = csv.read_csv(io.BytesIO(data)).column("close").to_pylist()
    elif output_format == "arrow":
        closes = pa.ipc.open_stream(data).read_all().column("close").to_pylist()
    elif output_format == "parquet":
        closes = pq.read_table(io.BytesIO(data)).column("close").to_pylist()
    else:
        closes = [__import__("json").loads(line)["close"] for line in data.splitlines()]
    assert closes == [bar.close for bar in bars]
    wrong = runner.invoke(app, ["query", "AAPL", "--format", "xml"], env=env)
    assert wrong.exit_code == 2
    assert "unknown --format" in wrong.output


EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.mark.parametrize(
    ("name", "args", "kind", "symbol"),
    [
        ("6EH4.XCME_1min_bars_20240101_20240131.csv.gz",
         ["--source", "cme", "--symbol", "6EH4.XCME", "--timeframe", "1m", "--timezone", "UTC"],
         "bars", "6EH4.XCME"),
        ("btc-perp-20211231-20220201_1m.csv.gz",
         ["--source", "perp", "--symbol", "BTC-PERP", "--timeframe", "1m", "--timezone", "UTC"],
         "bars", "BTC-PERP"),
        ("gbpusd-m1-bid-2012.csv.gz",
         ["--source", "dukascopy", "--symbol", "GBPUSD", "--timeframe", "1m"], "bars", "GBPUSD"),
        ("usdjpy-ticks.csv", ["--symbol", "USDJPY"], "quotes", "USDJPY"),
    ],
)  # fmt: skip
def test_the_repos_example_files_load_with_defaults(
    tmp_path: Path, env: dict[str, str], name: str, args: list[str], kind: str, symbol: str
) -> None:
    import csv
    import gzip
    import io

    path = EXAMPLES / name
    text = gzip.decompress(path.read_bytes()).decode() if name.endswith(".gz") else path.read_text()
    lines = list(csv.reader(io.StringIO(text)))[1:]
    rows = len(lines)
    # a bar's time is its key: a bar repeated is one bar; ticks of one instant are all kept
    # (the quotes file has 7 that share their microsecond with another)
    distinct = len({line[0] for line in lines}) if kind == "bars" else rows
    result = runner.invoke(app, ["ingest", str(path), "--table", kind, *args], env=env)
    assert result.exit_code == 0, result.output
    stored = f"wrote {distinct} {kind}"
    if distinct != rows:
        stored += f" to sqlite:///{tmp_path}/store.db (read {rows}: {rows - distinct} repeated"
    assert stored in result.output
    query = ["query", symbol, "--kind", kind, "--format", "csv", "--limit", "1000000"]
    query += ["--output", str(tmp_path / "out.csv")]
    assert runner.invoke(app, query, env=env).exit_code == 0
    assert (tmp_path / "out.csv").read_text().count("\n") == distinct + 1  # and a header


def test_an_example_file_without_its_defaults_names_line_and_field(env: dict[str, str]) -> None:
    path = EXAMPLES / "gbpusd-m1-bid-2012.csv.gz"
    result = runner.invoke(app, ["ingest", str(path), "--table", "bars"], env=env)
    assert result.exit_code == 2
    assert "gbpusd-m1-bid-2012.csv.gz:2: field source: Field required" in result.output


def test_bad_file_names_line_and_field(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text(make_bar().model_dump_json() + "\n" + '{"source": "x"}\n')
    result = runner.invoke(app, ["ingest", str(path)], env=env)
    assert result.exit_code == 2
    # one unwrapped line, whatever the terminal width and the length of the path
    assert any(
        line.startswith("error: ") and line.endswith("bad.ndjson:2: field symbol: Field required")
        for line in result.output.splitlines()
    ), result.output


def test_help_names_environment_variables() -> None:
    result = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "MDS_DATABASE_URL" in result.output


def test_openapi_is_committed_and_current() -> None:
    from market_data_store.service.openapi import spec_text

    committed = Path(__file__).resolve().parents[3] / "docs" / "openapi" / "market-data-store.json"
    assert committed.read_text() == spec_text(), (
        "run: uv run mds openapi -o docs/openapi/market-data-store.json"
    )


def test_jobs_lists_runs(env: dict[str, str]) -> None:
    import asyncio

    from market_data_store.dsn import DatabaseUrl
    from market_data_store.jobs import JobRunTracker
    from market_data_store.store import make_backend

    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0

    async def start() -> None:
        backend = make_backend(DatabaseUrl.parse(env["MDS_DATABASE_URL"]))
        await backend.open()
        await JobRunTracker(backend).start("nightly-backfill", provider="replay", mode="backfill")
        await backend.close()

    asyncio.run(start())
    result = runner.invoke(app, ["jobs"], env=env | {"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "nightly-backfill" in result.output
    assert "backfill" in result.output


@pytest.mark.parametrize("suffix", [".ndjson", ".csv"])
def test_export_round_trips_through_ingest(
    tmp_path: Path, env: dict[str, str], suffix: str
) -> None:
    bars = [
        make_bar(start=T0 + timedelta(minutes=i), vwap=None, trade_count=None)
        for i in range(12_345)
    ]
    source = tmp_path / "in.ndjson"
    source.write_text("".join(bar.model_dump_json() + "\n" for bar in bars))
    assert runner.invoke(app, ["ingest", str(source)], env=env).exit_code == 0
    exported = tmp_path / f"out{suffix}"
    result = runner.invoke(app, ["export", "AAPL", "-o", str(exported)], env=env)
    assert result.exit_code == 0, result.output
    assert "wrote 12345 AAPL 1m bars" in result.output
    from market_data_store.files import read_records

    assert list(read_records(exported, "bars")) == bars


@pytest.mark.parametrize("missing", ["asyncpg", "greenlet"])
def test_a_missing_postgres_extra_is_one_line_naming_the_install(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    url = "postgresql://md:pw@127.0.0.1:1/market_data"
    for command in (["migrate"], ["query", "AAPL"]):
        result = runner.invoke(app, [*command, "--database-url", url])
        assert result.exit_code != 0
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1, result.output
        assert lines[0].startswith("error: ")
        assert lines[0].endswith(
            f"PostgreSQL needs {missing}: pip install 'market-data-store[postgres]'"
        )
        assert ":pw@" not in lines[0]


def test_version_names_the_distribution() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"market-data-store {version('market-data-store')}\n"


HEAVY = ("sqlalchemy", "asyncpg", "aiosqlite", "alembic", "fastapi", "starlette", "uvicorn",
         "httpx", "redis", "pyarrow", "structlog", "pydantic_settings", "market_data_core.bars",
         "market_data_store.store", "market_data_store.coordinator")  # fmt: skip


def test_help_and_version_import_no_backend() -> None:
    # In a fresh interpreter, as `mds --help` runs: backends load only for a command.
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from market_data_store.cli import app\n"
        "for args in (['--help'], ['--version'], ['serve', '--help'], ['dlq', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert [m for m in HEAVY if m in loaded] == []
    assert "market_data_store.cli" in loaded


@pytest.mark.parametrize(
    "command",
    [[], ["migrate"], ["serve"], ["ingest"], ["query"], ["export"], ["health"], ["jobs"],
     ["openapi"], ["dlq"], ["dlq", "list"], ["dlq", "replay"]],
)  # fmt: skip
def test_help_shows_a_flag_without_a_value(command: list[str]) -> None:
    # `--json <bool>` (Typer's Rich panels) reads as if the flag wanted a value; it takes none
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    flag = "--json" if command == ["query"] else "--help"
    assert any(line.strip().split("  ")[0] == flag for line in result.output.splitlines())


def test_a_corrected_file_replaces_and_the_past_stays_readable(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """``mds ingest`` versions rows with the file's time: the same file again changes
    nothing, a corrected (newer) file replaces what it corrects; ``--as-known-at`` reads
    what the store held before, ``mds revisions`` says when and why it changed."""
    import json
    import time
    from datetime import UTC, datetime

    assert runner.invoke(app, ["migrate"], env=env).exit_code == 0
    path = tmp_path / "bars.ndjson"
    first = [make_bar(as_of=None, close=185.5)]
    path.write_text("".join(bar.model_dump_json(exclude={"as_of"}) + "\n" for bar in first))
    for _ in range(2):  # the second run of the same file changes nothing
        assert runner.invoke(app, ["ingest", str(path), "--table", "bars"], env=env).exit_code == 0
    time.sleep(0.02)
    between = datetime.now(UTC)
    time.sleep(0.02)
    corrected = [make_bar(as_of=None, close=185.1, reason="correction")]
    path.write_text("".join(bar.model_dump_json(exclude={"as_of"}) + "\n" for bar in corrected))
    assert runner.invoke(app, ["ingest", str(path), "--table", "bars"], env=env).exit_code == 0

    def closes(*extra: str) -> list[float]:
        args = ["query", "AAPL", "--json", "--limit", "10", *extra]
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        return [
            json.loads(line)["close"] for line in result.output.splitlines() if line.startswith("{")
        ]

    assert closes() == [185.1]
    assert closes("--as-known-at", between.isoformat()) == [185.5]
    result = runner.invoke(app, ["revisions", "AAPL", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    versions = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [(v["close"], v["reason"], v["superseded_at"] is None) for v in versions] == [
        (185.5, None, False),
        (185.1, "correction", True),
    ]
    table = runner.invoke(app, ["revisions", "AAPL"], env=env)
    assert table.exit_code == 0, table.output
    assert "correction" in table.output
    # in 80 columns a version is a block: every time whole, no line past the width
    terminal = env | {"COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    narrow = runner.invoke(app, ["revisions", "AAPL"], env=terminal)
    assert narrow.exit_code == 0, narrow.output
    assert all(len(line) <= 80 for line in narrow.output.splitlines()), narrow.output
    assert "…" not in narrow.output
    learned = [json.loads(line)["ingested_at"] for line in result.output.splitlines()
               if line.startswith("{")]  # fmt: skip
    stamps = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?", narrow.output)
    assert len(stamps) >= 2 * len(learned), narrow.output  # each version's time and learned
    assert "rev " in narrow.output
    assert "correction" in narrow.output
    nothing = runner.invoke(app, ["revisions", "MSFT"], env=terminal)  # no versions at all
    assert nothing.exit_code == 0, nothing.output
    old = runner.invoke(app, ["query", "AAPL", "--as-known-at", "2001-01-01T00:00:00Z"], env=env)
    assert old.exit_code == 2
    assert "MDS_HISTORY_RETENTION_DAYS" in old.output


def test_serve_on_a_busy_port_says_so_in_one_line_before_anything_starts(
    tmp_path: Path, env: dict[str, str]
) -> None:
    import os
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "market_data_store.cli", "serve", "--port", str(port)],
            env={**os.environ, **env, "COLUMNS": "200"}, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert lines == [
        f"error: 127.0.0.1:{port} is in use (another server is listening there): choose"
        " another with --port or MDS_PORT"
    ]
    assert not (tmp_path / "store.db").exists()  # nothing started, nothing created


def test_serve_help_shows_the_defaults() -> None:
    from market_data_store.settings import StoreSettings

    shown = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    fields = StoreSettings.model_fields
    assert f"default: ({fields['host'].default})]" in shown
    assert f"default: ({fields['port'].default})]" in shown


# -- progress: what `mds ingest` shows while it reads a file (issue 25, item 4) -----------------


def _bars_file(path: Path, count: int) -> Path:
    bars = [
        make_bar(start=T0 + timedelta(minutes=i), close=185.0 + (i % 90) / 100)
        for i in range(count)
    ]
    path.write_text("".join(bar.model_dump_json() + "\n" for bar in bars))
    return path


def test_ingest_in_a_terminal_shows_percent_rate_and_eta_then_the_time_it_took(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The file's size is the total, the bytes read so far the part done."""
    import re

    from market_data_core.testing.terminal import run_in_terminal

    source = _bars_file(tmp_path / "bars.ndjson", 20_000)
    shown = run_in_terminal(
        [sys.executable, "-m", "market_data_store.cli", "ingest", str(source),
         "--batch-size", "1000"],
        env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.text
    lines = [line.strip() for line in shown.lines]
    bars = [line for line in lines if line.startswith("bars.ndjson ") and line.endswith("%")]
    percents = {int(line.rsplit(" ", 1)[-1].rstrip("%")) for line in bars}
    assert any(0 < p < 100 for p in percents), shown.text
    figures = [line for line in lines if re.fullmatch(
        r"[\d,]+ rows +[\d,]+ rows/s +ETA \d+\.\d s +elapsed \d+\.\d s", line
    )]  # fmt: skip
    assert figures, shown.text
    final = [line for line in lines if line.startswith("bars.ndjson: ")]
    assert re.fullmatch(
        r"bars\.ndjson: 100%, 20,000 rows, [\d,]+ rows/s, elapsed \d+\.\d s", final[-1]
    ), final
    assert "wrote 20000 bars" in shown.text
    assert all(len(line) <= 80 for line in [*bars, *figures, *final]), shown.text


def test_ingest_off_a_terminal_prints_calm_lines_without_carriage_returns(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from market_data_store import _progress

    monkeypatch.setattr(_progress, "LINE_INTERVAL", 0.0)  # a line per batch read
    source = _bars_file(tmp_path / "bars.ndjson", 3_000)
    result = runner.invoke(app, ["ingest", str(source), "--batch-size", "1000"], env=env)
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    assert "\x1b[" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("bars.ndjson: ")]
    assert len(lines) >= 3, result.stderr
    assert all("rows/s" in line and "elapsed" in line for line in lines)
    assert lines[-1].startswith("bars.ndjson: 100%, 3,000 rows, ")
    assert "ETA" in lines[0]


# -- 80 columns: what `mds query` shows in a terminal (issue 25, item 5) -------------------------


def test_query_fits_80_columns_with_whole_timestamps_and_aligned_prices(
    tmp_path: Path, env: dict[str, str]
) -> None:
    closes = [435.3, 435.25, 1234.5, 435.0]
    bars = [
        make_bar(
            start=T0 + timedelta(minutes=i), source="vendor-consolidated" if i % 2 else "sip",
            open=c, high=c + 0.5, low=c - 0.25, close=c, volume=1_234_567.0 + i, vwap=None,
        )
        for i, c in enumerate(closes)
    ]  # fmt: skip
    source = tmp_path / "bars.ndjson"
    source.write_text("".join(bar.model_dump_json() + "\n" for bar in bars))
    assert runner.invoke(app, ["ingest", str(source)], env=env).exit_code == 0
    terminal = env | {"COLUMNS": "80", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    result = runner.invoke(app, ["query", "AAPL", "--limit", "10"], env=terminal)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert "…" not in result.stdout
    assert "..." not in result.stdout
    for i in range(4):
        assert f"2024-01-02T14:3{i}:00Z" in result.stdout  # whole, in ISO 8601
    rows = [line for line in lines if "2024-01-02T" in line]
    cells = [[c.strip() for c in row.strip("│ ").split("│")] for row in rows]
    header = next(line for line in lines if "start" in line)
    names = [c.strip() for c in header.strip("┃ ").split("┃")]
    close = [row[names.index("close")] for row in cells]
    assert close == ["435.30", "435.25", "1234.50", "435.00"]  # one precision: the column's
    assert len({len(row[names.index("high")].split(".")[1]) for row in cells}) == 1
    assert len({row.index("│") for row in rows}) == 1  # the columns line up
    assert "source" not in names  # left out first, and said so
    assert "left out to fit the terminal: source" in " ".join(result.stdout.split())
    wide = runner.invoke(app, ["query", "AAPL", "--limit", "10"], env=terminal | {"COLUMNS": "140"})
    assert "vendor-consolidated" in wide.stdout
    as_json = runner.invoke(app, ["query", "AAPL", "--json"], env=terminal)
    first = json.loads(as_json.stdout.splitlines()[0])
    assert first["close"] == 435.3  # --json unchanged: the value, not its display

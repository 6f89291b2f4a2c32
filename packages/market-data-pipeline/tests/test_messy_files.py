"""``mdp run`` on real and messy trade files, as a new user would try it (issue 15).

The files are the repository's real Binance BTC/USDT trades (``examples/data``) and files
made from them (``examples/data/messy``, see its README): header-only and empty, truncated,
a NaN price, a timestamp without an offset, late arrivals and duplicates. Each test checks
what the user sees: the exit code, the message, the files written, the run summary.
"""

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from market_data_pipeline import records
from market_data_pipeline.cli import app

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data"
MESSY = DATA / "messy"
runner = CliRunner()


def _config(tmp_path: Path, nodes: str, edges: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(f"name: messy\nnodes:\n{nodes}\nedges: {edges}\n")
    return path


def _replay(path: Path, **extra: str) -> str:
    params = ", ".join(f"{k}: {v}" for k, v in {"symbol": "BTCUSDT", **extra}.items())
    return f"  - {{id: trades, type: replay, params: {{path: '{path}', kind: trades, {params}}}}}"


def _read_only(tmp_path: Path, source: Path, **extra: str) -> Path:
    """A config that replays ``source`` into the null sink."""
    return _config(
        tmp_path, f"{_replay(source, **extra)}\n  - {{id: out, type: 'null'}}", "[trades -> out]"
    )


def _run(config: Path) -> tuple[int, str, dict[str, Any] | None]:
    result = runner.invoke(app, ["run", str(config), "--json"])
    summary = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, result.output, summary


def _summary(config: Path) -> dict[str, Any]:
    """The run summary of a run that must succeed."""
    code, output, summary = _run(config)
    assert code == 0, output
    assert summary is not None
    return summary


def _resample_to_file(tmp_path: Path, source: Path, out: Path) -> Path:
    """A config that replays ``source`` into 10 s bars written to ``out``."""
    return _config(
        tmp_path,
        f"{_replay(source)}\n"
        "  - {id: m1, type: resample_ohlc, params: {timeframe: 10s}}\n"
        f"  - {{id: out, type: file, params: {{path: '{out}'}}}}",
        "[trades -> m1, m1 -> out]",
    )


@pytest.mark.parametrize("name", ["btcusdt-trades-header-only.csv", "btcusdt-trades-empty.parquet"])
def test_an_input_without_rows_replaces_the_old_output_with_an_empty_file(
    tmp_path: Path, name: str
) -> None:
    out = tmp_path / "bars.parquet"
    _summary(_resample_to_file(tmp_path, DATA / "btcusdt-trades.parquet", out))
    previous = pq.read_table(out)
    assert previous.num_rows == 5  # a previous run's output
    summary = _summary(_resample_to_file(tmp_path, MESSY / name, out))
    assert summary["nodes"]["out"]["in"] == 0
    table = pq.read_table(out)
    assert table.num_rows == 0  # not the stale 5 bars
    assert table.schema.equals(previous.schema, check_metadata=False)  # the same columns
    assert table.schema.equals(records.BARS, check_metadata=False)


def test_the_default_dedupe_keeps_distinct_trades_of_one_millisecond(tmp_path: Path) -> None:
    trades = pq.read_table(DATA / "btcusdt-trades.parquet").to_pandas()
    shared = int(trades.duplicated("timestamp", keep=False).sum())
    assert shared > 600  # the real file: hundreds of trades share their millisecond
    out = tmp_path / "kept.parquet"
    config = _config(
        tmp_path,
        f"{_replay(DATA / 'btcusdt-trades.parquet')}\n"
        "  - {id: dd, type: deduplicate}\n"
        f"  - {{id: out, type: file, params: {{path: '{out}'}}}}",
        "[trades -> dd, dd -> out]",
    )
    summary = _summary(config)
    assert pq.read_table(out).num_rows == len(trades)
    assert summary["nodes"]["dd"].get("deduplicated", 0) == 0


def test_resampled_bars_and_late_rows_are_counted_apart(tmp_path: Path) -> None:
    """The file repeats two trades (dropped by dedupe, counted) and ends with three trades of
    its first seconds (late for 10 s bars: they go to the late output, not into the bars)."""
    source = MESSY / "btcusdt-trades-late-and-duplicates.csv"
    bars, late = tmp_path / "bars.parquet", tmp_path / "late.csv"
    config = _config(
        tmp_path,
        f"{_replay(source)}\n"
        "  - {id: dd, type: deduplicate}\n"
        "  - {id: m10s, type: resample_ohlc, params: {timeframe: 10s}}\n"
        f"  - {{id: out, type: file, params: {{path: '{bars}'}}}}\n"
        f"  - {{id: late, type: file, params: {{path: '{late}'}}}}",
        "[trades -> dd, dd -> m10s, m10s -> out, m10s.late -> late]",
    )
    summary = _summary(config)
    written = pq.read_table(bars)
    late_rows = pd.read_csv(late)
    raw = pd.read_csv(source)
    assert summary["nodes"]["dd"]["deduplicated"] == len(raw) - len(raw.drop_duplicates()) == 2
    assert summary["nodes"]["m10s"]["out"] == written.num_rows == 5
    assert summary["nodes"]["m10s"]["late"] == len(late_rows) == 3
    assert summary["nodes"]["m10s"]["in"] == summary["nodes"]["dd"]["out"]
    assert summary["late"] == 3
    assert int(written.column("trade_count").to_pandas().sum()) == len(raw) - 2 - 3
    table = runner.invoke(app, ["run", str(config)])
    row = next(line for line in table.output.splitlines() if "m10s" in line)
    assert "late 3" in row
    assert row.split("│")[4].strip() == "5"  # the out column: bars only


def test_a_corrupt_parquet_file_is_named(tmp_path: Path) -> None:
    source = MESSY / "btcusdt-trades-truncated.parquet"
    config = _read_only(tmp_path, source)
    code, output, _ = _run(config)
    assert code != 0
    assert str(source) in output.replace("\n", "")
    assert "not a readable Parquet file" in output


def test_a_nan_price_is_named_as_such_with_its_line(tmp_path: Path) -> None:
    config = _read_only(tmp_path, MESSY / "btcusdt-trades-nan-price.csv")
    code, output, _ = _run(config)
    assert code != 0
    flat = output.replace("\n", "")
    assert "btcusdt-trades-nan-price.csv:6, field 'price': is not a finite number (nan)" in flat
    assert "missing" not in flat


def test_a_timestamp_without_an_offset_among_aware_ones(tmp_path: Path) -> None:
    source = MESSY / "btcusdt-trades-naive-timestamp.csv"
    unset = _read_only(tmp_path, source)
    code, output, _ = _run(unset)
    assert code != 0
    flat = output.replace("\n", "")
    assert (
        "naive-timestamp.csv:8, field 'ts': has no UTC offset ('2021-01-08 00:00:00.471')" in flat
    )
    assert "set `timezone:`" in flat
    out = tmp_path / "read.parquet"
    utc = _config(
        tmp_path,
        f"{_replay(source, timezone='UTC')}\n  - {{id: out, type: file, params: {{path: '{out}'}}}}",
        "[trades -> out]",
    )
    code, output, _ = _run(utc)
    assert code == 0, output
    times = pq.read_table(out).column("ts").to_pylist()
    assert len(times) == 120
    assert times[6].isoformat() == "2021-01-08T00:00:00.471000+00:00"  # line 8, read in UTC


def test_a_cycle_error_names_the_cycle(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        f"{_replay(DATA / 'btcusdt-trades.parquet')}\n"
        "  - {id: a, type: deduplicate}\n  - {id: sink, type: 'null'}",
        "[trades -> a, a -> a, a -> sink]",
    )
    code, output, _ = _run(config)
    assert code == 2
    assert "the graph has a cycle: a -> a" in output
    assert "sink" not in output.split("cycle", 1)[1]


def test_type_null_and_unknown_types_say_what_to_write(tmp_path: Path) -> None:
    def sink_of_type(written: str) -> Path:
        replay = _replay(DATA / "btcusdt-trades.parquet")
        return _config(tmp_path, f"{replay}\n  - {{id: out, type: {written}}}", "[trades -> out]")

    code, output, _ = _run(sink_of_type("null"))  # YAML's null, not the string
    assert code == 2
    assert "type: 'null'" in output
    code, output, _ = _run(sink_of_type("nul"))
    assert code == 2
    flat = " ".join(output.split())
    for kind in ("providers:", "operators:", "sinks:"):
        part = flat.split(kind, 1)[1].split(";", 1)[0]
        names = [n.strip(" ,)") for n in part.split(",")]
        assert len(names) == len(set(names)), f"{kind} lists a name twice: {names}"
    assert flat.count("redis_stream") == 2  # once a provider, once a sink


def test_the_messy_files_are_documented() -> None:
    readme = (MESSY / "README.md").read_text()
    for path in MESSY.iterdir():
        if path.name != "README.md":
            assert path.name in readme, f"{path.name} is not described in {MESSY}/README.md"

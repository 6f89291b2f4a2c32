"""``mdp run`` on real and messy trade files, as a new user would try it (issue 15).

The files are the repository's real Binance BTC/USDT trades (``examples/data``) and files
made from them (``examples/data/messy``, see its README): header-only and empty, truncated,
a NaN price, a timestamp without an offset, late arrivals and duplicates. Each test checks
what the user sees: the exit code, the message, the files written, the run summary.
"""

import gzip
import json
import shutil
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


HEADER = (MESSY / "btcusdt-trades-header-only.csv").read_bytes()
NO_RECORDS: dict[str, bytes | Path] = {
    "zero-bytes.csv": b"",
    "zero-bytes.csv.gz": b"",  # not even a gzip header
    "zero-bytes.ndjson": b"",
    "zero-bytes.jsonl": b"",
    "header-only.csv": HEADER,
    "header-only.csv.gz": gzip.compress(HEADER),
    "blank-lines.csv": b"\n\n",
    "blank-lines.ndjson": b"\n \n",  # NDJSON has no header: lines without an object
    "blank-lines.jsonl": b"\n",
    "no-rows.parquet": MESSY / "btcusdt-trades-empty.parquet",  # Parquet's header only
}
OUTPUTS = ("bars.parquet", "bars.csv", "bars.ndjson")


def _resample_to_files(tmp_path: Path, source: Path) -> Path:
    """A config that replays ``source`` into 10 s bars written to the three ``OUTPUTS``."""
    sinks = "\n".join(
        f"  - {{id: out{i}, type: file, params: {{path: '{tmp_path / name}'}}}}"
        for i, name in enumerate(OUTPUTS)
    )
    edges = ", ".join(f"m1 -> out{i}" for i in range(len(OUTPUTS)))
    return _config(
        tmp_path,
        f"{_replay(source)}\n  - {{id: m1, type: resample_ohlc, params: {{timeframe: 10s}}}}\n"
        f"{sinks}",
        f"[trades -> m1, {edges}]",
    )


def _previous_run(tmp_path: Path) -> dict[str, bytes]:
    """The outputs of a run on the real file: 5 bars in each format."""
    _summary(_resample_to_files(tmp_path, DATA / "btcusdt-trades.parquet"))
    assert pq.read_table(tmp_path / "bars.parquet").num_rows == 5
    return {name: (tmp_path / name).read_bytes() for name in OUTPUTS}


@pytest.mark.parametrize("name", sorted(NO_RECORDS))
def test_an_input_without_records_succeeds_with_empty_outputs_and_a_warning(
    tmp_path: Path, name: str
) -> None:
    """Zero bytes and a header only are the same thing, a file without records: the run
    succeeds, every output is replaced by an empty file of the right columns, and a warning
    names the file."""
    previous = _previous_run(tmp_path)
    source = tmp_path / name
    given = NO_RECORDS[name]
    if isinstance(given, Path):
        shutil.copy(given, source)
    else:
        source.write_bytes(given)
    result = runner.invoke(app, ["run", str(_resample_to_files(tmp_path, source)), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["state"] == "completed"
    assert summary["nodes"]["trades"]["out"] == 0
    warning = next(json.loads(line) for line in result.stderr.splitlines() if "no records" in line)
    assert warning["level"] == "warning"
    assert warning["path"] == str(source)
    bars = pq.read_table(tmp_path / "bars.parquet")
    assert bars.num_rows == 0
    assert bars.schema.equals(records.BARS, check_metadata=False)
    csv_lines = (tmp_path / "bars.csv").read_text().splitlines()
    assert csv_lines == previous["bars.csv"].decode().splitlines()[:1]  # the header only
    assert csv_lines == [",".join(f'"{n}"' for n in records.BARS.names)]
    assert (tmp_path / "bars.ndjson").read_bytes() == b""


def test_a_zero_byte_parquet_file_fails_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    """Zero bytes are no Parquet file (one without rows still holds its columns): the run
    fails naming the file; the outputs stay as the previous run wrote them (nothing
    half-written) and a warning names each as an earlier run's."""
    previous = _previous_run(tmp_path)
    source = tmp_path / "zero-bytes.parquet"
    source.write_bytes(b"")
    result = runner.invoke(app, ["run", str(_resample_to_files(tmp_path, source)), "--json"])
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert f"{source}: not a readable Parquet file: it is empty (0 bytes)" in flat
    assert result.stdout == ""  # no summary: nothing says this run completed
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == previous[name]
    kept = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if "earlier run's, kept as it was" in line
    ]
    assert sorted(w["path"] for w in kept) == sorted(str(tmp_path / n) for n in OUTPUTS)
    assert {w["level"] for w in kept} == {"warning"}


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

"""The README's first command (examples/core_quickstart.py) on real data, checked against
pandas as an independent oracle for the bars it writes."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "core_quickstart.py"
CSV = ROOT / "examples" / "data" / "usdjpy-ticks.csv"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(EXAMPLE), *args]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("timeframe", ["1m", "5m"])
def test_bars_equal_pandas_resample_of_the_mid(tmp_path: Path, timeframe: str) -> None:
    out = tmp_path / "bars.ndjson"
    result = _run("--timeframe", timeframe, "--out", str(out))
    assert result.returncode == 0, result.stderr
    bars = pd.DataFrame([json.loads(line) for line in out.read_text().splitlines()])
    quotes = pd.read_csv(CSV)
    quotes.index = pd.to_datetime(quotes.pop("timestamp"), utc=True, format="ISO8601")
    mid = (quotes["bid"] + quotes["ask"]) / 2
    rule = {"1m": "1min", "5m": "5min"}[timeframe]
    expected = mid.resample(rule).agg(["first", "max", "min", "last", "count"])
    expected = expected[expected["count"] > 0]
    assert len(bars) == len(expected)
    assert list(pd.to_datetime(bars["start"])) == list(expected.index)
    for column, oracle in [("open", "first"), ("high", "max"), ("low", "min"), ("close", "last")]:
        assert bars[column].tolist() == pytest.approx(expected[oracle].tolist(), rel=1e-12)
    assert bars["trade_count"].tolist() == expected["count"].tolist()
    assert f"wrote {len(bars)} bars" in result.stdout
    assert "level=hard utilization=95% -> producer rate x0.0" in result.stdout


def test_bad_row_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    lines = CSV.read_text().splitlines()
    lines[5] = "2013-01-01 22:02:37+00:00,86.9,86.1"  # crossed: bid above ask
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = _run(str(bad))
    assert result.returncode == 2
    assert f"{bad}:6: invalid quote" in result.stderr
    assert "crossed quote: bid 86.9 is above ask 86.1" in result.stderr

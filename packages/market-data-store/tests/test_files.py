"""Reading NDJSON / CSV / Parquet input files with errors that name file, line and field."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_data_core import to_ns
from market_data_core.testing import make_bar, make_trade
from market_data_store.files import BadRecordError, batches, read_records


def test_ndjson_bars(tmp_path: Path) -> None:
    bars = [make_bar(), make_bar(symbol="MSFT")]
    path = tmp_path / "bars.ndjson"
    path.write_text("".join(b.model_dump_json() + "\n" for b in bars) + "\n")
    assert list(read_records(path, "bars")) == bars


def test_csv_trades_with_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text("symbol,ts,price,size,exchange\nAAPL,2024-01-02T14:30:00Z,185.25,100,\n")
    assert list(read_records(path, "trades")) == [make_trade(as_of=None, ordinal=None)]


def test_parquet_trades(tmp_path: Path) -> None:
    path = tmp_path / "trades.parquet"
    table = pa.table(
        {"symbol": ["AAPL"], "ts": ["2024-01-02T14:30:00Z"], "price": [185.25], "size": [100.0]}
    )
    pq.write_table(table, path)
    assert list(read_records(path, "trades")) == [make_trade(as_of=None, ordinal=None)]


def test_nanosecond_timestamps_are_read_exactly(tmp_path: Path) -> None:
    """From a Parquet ns column, and from CSV text with nine digits, naive in a zone too."""
    nanos = 1_704_205_800_123_456_789
    parquet = tmp_path / "trades.parquet"
    columns = {"symbol": ["AAPL"], "price": [1.0], "size": [1.0]}
    pq.write_table(
        pa.table({**columns, "ts": pa.array([nanos], pa.timestamp("ns", "UTC"))}), parquet
    )
    csv = tmp_path / "trades.csv"
    csv.write_text("symbol,ts,price,size\nAAPL,2024-01-02 14:30:00.123456789,1,1\n")
    for path, zone in ((parquet, None), (csv, "UTC")):
        (trade,) = read_records(path, "trades", timezone=zone)
        assert to_ns(trade.ts) == nanos, path


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.ndjson", '{"symbol": "AAPL"}\n', "bad.ndjson:1: field source: Field required"),
        ("bad.ndjson", "\n{not json\n", "bad.ndjson:2: not JSON"),
        ("bad.ndjson", "[1, 2]\n", "bad.ndjson:1: expected a JSON object"),
        (
            "bad.csv",
            "symbol,ts,price,size\nAAPL,2024-01-02T14:30:00Z,nan,1\n",
            "bad.csv:2: field price",
        ),
        ("bad.txt", "", "unknown format '.txt'"),
    ],
)
def test_bad_input_names_file_line_and_field(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    table = "bars" if "source" in message else "trades"
    with pytest.raises(BadRecordError, match=message.replace(".", r"\.").replace("(", r"\(")):
        list(read_records(path, table))


def test_batches() -> None:
    assert [len(b) for b in batches(iter([make_bar()] * 7), 3)] == [3, 3, 1]


def test_json_dump_matches_core(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(make_bar().model_dump(mode="json")) + "\n")
    assert list(read_records(path, "bars")) == [make_bar()]

"""The committed JSON Schemas under docs/contracts/ are exactly what the code generates."""

import json
from pathlib import Path

import pytest

from market_data_core import CONTRACT_VERSION
from market_data_core.schemas import CONTRACTS, check, generate, main, write

COMMITTED = Path(__file__).resolve().parents[4] / "docs" / "contracts"


def test_committed_schemas_match_the_code() -> None:
    problems = check(COMMITTED)
    assert problems == [], "\n".join(problems)


def test_index_names_every_contract_and_the_version() -> None:
    index = json.loads((COMMITTED / "index.json").read_text())
    assert index == {"contract_version": CONTRACT_VERSION, "contracts": sorted(CONTRACTS)}


def test_drift_is_reported_per_file(tmp_path: Path) -> None:
    write(tmp_path)
    bar = tmp_path / "Bar.json"
    schema = json.loads(bar.read_text())
    schema["properties"]["volume"]["minimum"] = -1
    bar.write_text(json.dumps(schema))
    (tmp_path / "Quote.json").unlink()
    (tmp_path / "Ghost.json").write_text("{}")
    problems = check(tmp_path)
    assert problems == [
        f"{tmp_path / 'Bar.json'}: differs from the code (run: mdc-schemas write {tmp_path})",
        f"{tmp_path / 'Quote.json'}: missing (run: mdc-schemas write {tmp_path})",
        f"{tmp_path / 'Ghost.json'}: no such contract in the code"
        " (remove it or restore the contract)",
    ]


def test_write_removes_schemas_of_removed_contracts(tmp_path: Path) -> None:
    (tmp_path / "Ghost.json").write_text("{}")
    write(tmp_path)
    assert not (tmp_path / "Ghost.json").exists()
    assert check(tmp_path) == []


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["write", str(tmp_path)]) == 0
    assert main(["check", str(tmp_path)]) == 0
    assert f"{len(CONTRACTS)} contract schemas match" in capsys.readouterr().out


def test_timestamps_and_timeframes_are_typed_in_the_schema() -> None:
    bar = json.loads(generate()["Bar.json"])
    assert bar["properties"]["start"]["format"] == "date-time"
    assert bar["properties"]["timeframe"]["type"] == "string"
    assert "low" in bar["required"]
    assert bar["additionalProperties"] is False  # user input: typos are errors
    feedback = json.loads(generate()["FeedbackEvent.json"])
    assert "additionalProperties" not in feedback  # peer message: newer fields are ignored
    assert feedback["properties"]["level"] == {"$ref": "#/$defs/BackpressureLevel"}

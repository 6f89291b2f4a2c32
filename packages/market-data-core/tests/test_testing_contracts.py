"""market_data_core.testing.contracts: the checks every package's contract tests rely on
report what a user would need to fix, and let nothing re-declared or undeclared through."""

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from market_data_core import CONTRACT_VERSION, HealthState, MarketDataError
from market_data_core.testing import make_bar, make_feedback_event, make_health_status
from market_data_core.testing.contracts import (
    CONTRACTS_DIR_ENV,
    ContractSchemas,
    ContractViolationError,
    contracts_dir,
    redeclared_contracts,
)

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "contracts"


@pytest.fixture
def schemas() -> ContractSchemas:
    return ContractSchemas.load(COMMITTED)


def test_the_directory_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CONTRACTS_DIR_ENV, raising=False)
    assert contracts_dir(COMMITTED) == COMMITTED
    release = tmp_path / "9.9.9"
    shutil.copytree(COMMITTED, release, ignore=shutil.ignore_patterns("releases"))
    monkeypatch.setenv(CONTRACTS_DIR_ENV, str(release))
    assert ContractSchemas.from_env(COMMITTED).directory == release
    monkeypatch.setenv(CONTRACTS_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(MarketDataError, match=r"MD_CONTRACTS_DIR=.*missing: no index.json"):
        contracts_dir(COMMITTED)


def test_valid_documents_have_no_errors(schemas: ContractSchemas) -> None:
    assert schemas.version == CONTRACT_VERSION
    assert schemas.strict
    status = make_health_status(HealthState.HEALTHY, HealthState.DEGRADED)
    assert schemas.errors("HealthStatus", status.model_dump(mode="json")) == []
    assert (
        schemas.errors("FeedbackEvent", json.loads(make_feedback_event().model_dump_json())) == []
    )
    schemas.assert_valid("Bar", make_bar().model_dump(mode="json"))


def test_errors_name_the_json_path(schemas: ContractSchemas) -> None:
    bar = make_bar().model_dump(mode="json") | {"volume": -1, "timeframe": "5 minutes"}
    assert schemas.errors("Bar", bar) == [
        "$.timeframe: '5 minutes' does not match '^([1-9][0-9]{0,5})([smhd])$'",
        "$.volume: -1 is less than the minimum of 0",
    ]
    with pytest.raises(ContractViolationError, match=r"Bar does not conform to .*Bar\.json"):
        schemas.assert_valid("Bar", bar)
    with pytest.raises(MarketDataError, match="no contract 'Ghost'"):
        schemas.errors("Ghost", {})


def test_strict_reports_fields_the_schema_does_not_declare(schemas: ContractSchemas) -> None:
    status = make_health_status(HealthState.HEALTHY).model_dump(mode="json")
    status["uptime"] = 12.5  # a local copy of the contract with a field core does not have
    status["components"][0]["owner"] = "ops"
    status["components"][0]["details"] = {"anything": 1}  # details are free-form
    assert schemas.errors("HealthStatus", status) == [
        "$.components[0].owner: not declared by the schema (a local re-declaration of the"
        " contract, or a field core does not have)",
        "$.uptime: not declared by the schema (a local re-declaration of the contract,"
        " or a field core does not have)",
    ]
    event = json.loads(make_feedback_event().model_dump_json()) | {"reason": "soft", "x": 1}
    assert [e.split(":")[0] for e in schemas.errors("FeedbackEvent", event)] == ["$.x"]


def test_an_older_release_tolerates_fields_its_peers_may_add(tmp_path: Path) -> None:
    """Against an older release, unknown fields are what a newer peer sends: tolerant
    schemas accept them, strict ones (user input, additionalProperties false) do not."""
    older = ContractSchemas.load(COMMITTED, strict=False)
    status = make_health_status(HealthState.HEALTHY).model_dump(mode="json") | {"uptime": 1}
    assert older.errors("HealthStatus", status) == []
    bar = make_bar().model_dump(mode="json") | {"exchange": "XNAS"}
    assert older.errors("Bar", bar) == [
        "$: Additional properties are not allowed ('exchange' was unexpected)"
    ]


def _package(root: Path, name: str, files: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for file, text in files.items():
        (package / file).write_text(textwrap.dedent(text))


def test_redeclared_contracts_are_found_in_source_and_at_run_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(
        tmp_path,
        "mdc_redeclares",
        {
            "health.py": """\
                from pydantic import BaseModel
                from market_data_core import Bar

                class HealthStatus(BaseModel):
                    service: str
                    state: str
            """,
            "feedback.py": """\
                from dataclasses import dataclass

                @dataclass
                class QueueEvent:
                    coordinator_id: str
                    queue_size: int
                    capacity: int
                    level: str
                    source: str
                    ts: str
                    seq: int
                    reason: str | None
                    utilization: float | None
            """,
            "aliases.py": "RateAdjustment = dict\n",
            "wakeup.py": """\
                class Signal:
                    '''Not the market-data Signal: a wake-up primitive with no fields.'''
                    __slots__ = ("_event",)
            """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("mdc_redeclares.health")
    try:
        found = redeclared_contracts("mdc_redeclares")
    finally:
        for module in [m for m in sys.modules if m.startswith("mdc_redeclares")]:
            del sys.modules[module]
    root = tmp_path / "mdc_redeclares"
    assert found == [
        f"{root / 'aliases.py'}:1: RateAdjustment = ... re-declares core's RateAdjustment"
        " (import it from market_data_core)",
        f"{root / 'feedback.py'}:4: class QueueEvent has every field of core's FeedbackEvent"
        " (use or subclass core's FeedbackEvent)",
        f"{root / 'health.py'}:4: class HealthStatus re-declares core's HealthStatus"
        " (import it from market_data_core)",
        "mdc_redeclares.health.HealthStatus is <class 'mdc_redeclares.health.HealthStatus'>,"
        " not core's market_data_core.health.HealthStatus",
    ]


def test_a_package_that_uses_core_has_no_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(
        tmp_path,
        "mdc_uses_core",
        {"service.py": "from market_data_core import HealthStatus, Bar as Bar\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("mdc_uses_core.service")
    try:
        assert redeclared_contracts("mdc_uses_core") == []
    finally:
        for module in [m for m in sys.modules if m.startswith("mdc_uses_core")]:
            del sys.modules[module]
    with pytest.raises(MarketDataError, match="'no_such_package_xyz' is not an installed"):
        redeclared_contracts("no_such_package_xyz")

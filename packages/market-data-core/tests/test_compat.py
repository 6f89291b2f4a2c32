"""The additive-only rule: what breaks a peer on an older contract version is reported."""

import json
from collections.abc import Callable
from typing import Any

import pytest

from market_data_core.compat import breaking_changes
from market_data_core.schemas import generate

Mutation = Callable[[dict[str, Any]], None]


def _mutated(name: str, mutate: Mutation) -> dict[str, str]:
    files = generate()
    schema = json.loads(files[name])
    mutate(schema)
    return files | {name: json.dumps(schema)}


def test_identical_schemas_are_compatible() -> None:
    assert breaking_changes(generate(), generate()) == []


def _add_optional(schema: dict[str, Any]) -> None:
    schema["properties"]["exchange_ts"] = {"type": "string", "format": "date-time"}


def _reword(schema: dict[str, Any]) -> None:
    schema["description"] = "New words."
    schema["properties"]["volume"]["title"] = "Traded volume"


@pytest.mark.parametrize("mutate", [_add_optional, _reword], ids=["new-optional", "reworded"])
def test_additive_changes_are_allowed(mutate: Mutation) -> None:
    assert breaking_changes(generate(), _mutated("Bar.json", mutate)) == []


@pytest.mark.parametrize(
    ("name", "mutate", "expected"),
    [
        ("Bar.json", lambda s: s["properties"].pop("vwap"), "Bar.vwap: field removed"),
        (
            "Bar.json",
            lambda s: s["required"].append("vwap"),
            "Bar.vwap: newly required",
        ),
        (
            "Bar.json",
            lambda s: s["required"].remove("symbol"),
            "Bar.symbol: no longer required",
        ),
        (
            "Trade.json",
            lambda s: s["properties"]["size"].update(type="integer"),
            "Trade.size: type changed from 'number' to 'integer'",
        ),
        (
            "Trade.json",
            lambda s: s["properties"]["symbol"].update(pattern="^[A-Z]+$"),
            "Trade.symbol: pattern changed",
        ),
        (
            "FeedbackEvent.json",
            lambda s: s["$defs"]["BackpressureLevel"]["enum"].append("critical"),
            "FeedbackEvent.level: enum members added: ['critical']",
        ),
        (
            "FeedbackEvent.json",
            lambda s: s["$defs"]["BackpressureLevel"]["enum"].remove("soft"),
            "FeedbackEvent.level: enum members removed: ['soft']",
        ),
        (
            "HealthStatus.json",
            lambda s: s["$defs"]["HealthComponent"]["properties"].pop("required"),
            "HealthStatus.components[].required: field removed",
        ),
        (
            "Bar.json",
            lambda s: s.update(additionalProperties=True),
            "Bar: additionalProperties changed from False to True",
        ),
    ],
)
def test_breaking_changes_are_named(name: str, mutate: Mutation, expected: str) -> None:
    problems = breaking_changes(generate(), _mutated(name, mutate))
    assert any(expected in problem for problem in problems), problems


def test_removed_contract_is_breaking() -> None:
    files = generate()
    del files["Quote.json"]
    assert breaking_changes(generate(), files) == ["Quote: contract removed"]

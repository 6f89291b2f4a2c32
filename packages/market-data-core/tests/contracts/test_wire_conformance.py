"""What the models put on the wire validates against the committed JSON Schemas, and what
the schemas forbid the models refuse: other services and languages can code against
docs/contracts/ alone."""

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from market_data_core.schemas import CONTRACTS
from market_data_core.testing import make_bar, make_feedback_event
from market_data_core.testing.strategies import STRATEGIES

COMMITTED = Path(__file__).resolve().parents[4] / "docs" / "contracts"
VALIDATORS = {
    name: Draft202012Validator(
        json.loads((COMMITTED / f"{name}.json").read_text()),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    for name in CONTRACTS
}


def _contract_name(model: type[BaseModel]) -> str:
    origin = model.__pydantic_generic_metadata__.get("origin") or model
    return origin.__name__


@pytest.mark.parametrize("model", list(STRATEGIES), ids=lambda m: m.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_serialized_models_conform_to_committed_schemas(model: type[BaseModel], data: Any) -> None:
    instance = data.draw(STRATEGIES[model])
    document = json.loads(instance.model_dump_json())
    errors = [e.message for e in VALIDATORS[_contract_name(model)].iter_errors(document)]
    assert errors == []


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("Bar", make_bar().model_dump(mode="json") | {"volume": -1}),
        ("Bar", make_bar().model_dump(mode="json") | {"timeframe": "5 minutes"}),
        ("Bar", make_bar().model_dump(mode="json") | {"unknown": 1}),
        ("FeedbackEvent", make_feedback_event().model_dump(mode="json") | {"level": "panic"}),
        (
            "FeedbackEvent",
            {k: v for k, v in make_feedback_event().model_dump(mode="json").items() if k != "seq"},
        ),
    ],
)
def test_schema_and_model_agree_on_rejects(name: str, document: dict[str, Any]) -> None:
    assert list(VALIDATORS[name].iter_errors(document)), "the schema should reject it"
    with pytest.raises(ValidationError):
        CONTRACTS[name].model_validate(document)

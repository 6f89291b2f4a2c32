"""Every contract survives JSON and Python round trips unchanged."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from market_data_core.schemas import CONTRACTS
from market_data_core.testing.strategies import STRATEGIES


def test_every_contract_has_a_strategy() -> None:
    generic_origins = {
        getattr(m, "__pydantic_generic_metadata__", {}).get("origin") or m
        for m in CONTRACTS.values()
    }
    assert generic_origins <= set(STRATEGIES)


@pytest.mark.parametrize("model", list(STRATEGIES), ids=lambda m: m.__name__)
@settings(max_examples=60)
@given(data=st.data())
def test_json_round_trip(model: type[BaseModel], data: Any) -> None:
    instance = data.draw(STRATEGIES[model])
    cls = type(instance)
    assert cls.model_validate_json(instance.model_dump_json()) == instance
    assert cls.model_validate(instance.model_dump()) == instance
    assert cls.model_validate(instance.model_dump(mode="json")) == instance

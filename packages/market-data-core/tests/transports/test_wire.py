import json

import pytest
from hypothesis import given

from market_data_core import CONTRACT_VERSION, ContractError, FeedbackEvent
from market_data_core.testing import make_feedback_event, make_rate_adjustment
from market_data_core.testing.strategies import feedback_events
from market_data_core.transports import decode, encode


@given(feedback_events())
def test_round_trip_through_bytes(event: FeedbackEvent) -> None:
    fields = encode(event, publisher="p1")
    as_bytes = {k.encode(): v.encode() for k, v in fields.items()}  # what redis-py returns
    wire = decode(as_bytes)
    assert wire.message == event
    assert wire.publisher == "p1"
    assert wire.contract == CONTRACT_VERSION


def test_fields_are_flat_strings() -> None:
    fields = encode(make_rate_adjustment(), publisher="p")
    assert set(fields) == {"type", "contract", "publisher", "body"}
    assert fields["type"] == "RateAdjustment"
    assert json.loads(fields["body"])["provider"] == "synthetic"


def test_newer_minor_with_extra_fields_is_read() -> None:
    fields = encode(make_feedback_event(), publisher="p")
    body = json.loads(fields["body"]) | {"new_field": 1}
    fields |= {"contract": "1.9.0", "body": json.dumps(body)}
    assert decode(fields).message == make_feedback_event()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "Nope"}, "unknown message type 'Nope'"),
        ({"contract": "2.0.0"}, "major versions differ"),
        ({"body": "{}"}, "invalid FeedbackEvent body"),
        ({"body": "not json"}, "invalid FeedbackEvent body"),
    ],
)
def test_bad_messages_are_explained(change: dict[str, str], message: str) -> None:
    fields = encode(make_feedback_event(), publisher="p") | change
    with pytest.raises(ContractError, match=message):
        decode(fields)


def test_missing_fields_are_named() -> None:
    with pytest.raises(ContractError, match="lacks field\\(s\\) body, publisher"):
        decode({"type": "FeedbackEvent", "contract": CONTRACT_VERSION})

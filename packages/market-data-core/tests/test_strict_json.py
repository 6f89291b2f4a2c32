"""``strict_json``: JSON with an object holding a key twice is refused, naming where;
anything else reads as ``json.loads`` reads it. ``json_charset_refusal``: JSON is UTF-8."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market_data_core.serving import DuplicateKeyError, json_charset_refusal, strict_json

documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=20,
)


@given(documents)
def test_json_without_repeated_keys_reads_as_json_loads_reads_it(document: Any) -> None:
    text = json.dumps(document)
    assert strict_json(text) == json.loads(text)
    assert strict_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "loc"),
    [
        ('{"a": 1, "a": 2}', ("a",)),
        ('[{"x": 1}, {"y": 1, "z": 2, "y": 3}]', (1, "y")),
        ('{"m": {"k": [0, {"q": 1, "q": 1}]}}', ("m", "k", 1, "q")),
    ],
)
def test_a_key_twice_is_refused_naming_where(text: str, loc: tuple[Any, ...]) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        strict_json(text)
    assert caught.value.loc == loc
    assert repr(loc[-1]) in caught.value.msg
    assert isinstance(caught.value, json.JSONDecodeError)


@pytest.mark.parametrize(
    ("content_type", "refused"),
    [
        ("application/json", False),
        ("application/json; charset=utf-8", False),
        ('application/json; charset="UTF-8"', False),
        ("application/json;charset=utf8", False),
        ("application/json; charset=latin-1", True),
        ("application/json; charset=utf-16", True),
        (None, False),
    ],
)
def test_json_is_utf_8(content_type: str | None, refused: bool) -> None:
    assert (json_charset_refusal(content_type) is not None) is refused

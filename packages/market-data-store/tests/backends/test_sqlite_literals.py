"""Which columns of a large batch the SQLite backend writes as literals of its statement
(``_literal``), against a model: exactly the columns of one integer or text value."""

import sqlite3
from unittest import mock

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_store.backends import sqlite as sqlite_module

_COLUMN_TYPES = {
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "int16": (pa.int16(), st.integers(-1, 2)),
    "ts": (pa.timestamp("us", tz="UTC"), st.integers(-(2**40), 2**40)),
    "text": (pa.string(), st.sampled_from(["", "a", "O'Hare", "\u00e9", "a\x00b"])),
    "large text": (pa.large_string(), st.sampled_from(["x", "y"])),
    "float": (pa.float64(), st.sampled_from([0.0, -0.0, 1.5])),
}


@settings(max_examples=300, deadline=None)
@given(
    type_name=st.sampled_from(sorted(_COLUMN_TYPES)),
    data=st.data(),
    chunks=st.integers(1, 3),
    nulls=st.booleans(),
)
def test_a_column_is_a_literal_exactly_when_it_holds_one_integer_or_text_value(
    type_name: str, data: st.DataObject, chunks: int, nulls: bool
) -> None:
    """``_literal`` against a model (one distinct value, no null, an integer or text
    without NUL), on columns whose first and last values agree while a middle one may
    not, in one or more chunks: the literal, when given, is that value in SQL."""
    kind, values = _COLUMN_TYPES[type_name]
    ends = data.draw(values)
    middle = data.draw(st.lists(st.one_of(st.just(ends), values), min_size=0, max_size=6))
    column = [ends, *middle, ends]
    if nulls:
        column[data.draw(st.integers(0, len(column) - 1))] = None
    cut = sorted(data.draw(st.lists(st.integers(0, len(column)), max_size=chunks - 1)))
    parts = [column[a:b] for a, b in zip([0, *cut], [*cut, len(column)], strict=True)]
    array = (
        pa.chunked_array([pa.array(p, pa.int64()).cast(kind) for p in parts], kind)
        if (type_name == "ts")
        else pa.chunked_array([pa.array(p, kind) for p in parts], kind)
    )
    with mock.patch.object(sqlite_module, "_LITERAL_FROM", 2):  # every batch is large
        got = sqlite_module._literal(array, len(column))
    distinct = set(column)
    constant = len(distinct) == 1 and None not in distinct
    if not constant or type_name == "float" or (type_name == "text" and "\x00" in ends):
        assert got is None
    elif isinstance(ends, int):
        assert got == str(ends)
    else:
        assert got == "'" + ends.replace("'", "''") + "'"
    with sqlite3.connect(":memory:") as db:
        if got is not None:  # the literal reads back as the value
            assert db.execute(f"SELECT {got}").fetchone()[0] == ends


_VALUE_TYPES = {
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "int16": (pa.int16(), st.integers(-(2**15), 2**15 - 1)),
    "uint64": (pa.uint64(), st.integers(0, 2**64 - 1)),
    "ts": (pa.timestamp("us", tz="UTC"), st.integers(-(2**62), 2**62)),
    "ts ns": (pa.timestamp("ns", tz="UTC"), st.integers(-(2**62), 2**62)),
    "float": (pa.float64(), st.floats(allow_nan=False) | st.sampled_from([0.0, -0.0])),
    "text": (pa.string(), st.text(max_size=4)),
    "large text": (pa.large_string(), st.sampled_from(["x", "y", "O'Hare"])),
    "bool": (pa.bool_(), st.booleans()),
}


@settings(max_examples=300, deadline=None)
@given(
    type_name=st.sampled_from(sorted(_VALUE_TYPES)),
    data=st.data(),
    chunks=st.integers(1, 3),
)
def test_the_values_bound_are_exactly_the_columns_python_values(
    type_name: str, data: st.DataObject, chunks: int
) -> None:
    """``_python_values`` (numpy and dictionary fast paths) against ``to_pylist()`` (the
    model; timestamps as integers): equal values of equal types, nulls as ``None``, -0.0
    kept, in one or more chunks, so that the rows SQLite stores are the batch's values."""
    kind, values = _VALUE_TYPES[type_name]
    column = data.draw(st.lists(st.one_of(values, st.none()) | values, max_size=12))
    cut = sorted(data.draw(st.lists(st.integers(0, len(column)), max_size=chunks - 1)))
    parts = [column[a:b] for a, b in zip([0, *cut], [*cut, len(column)], strict=True)]
    if type_name.startswith("ts"):
        array = pa.chunked_array([pa.array(p, pa.int64()).cast(kind) for p in parts], kind)
        expected = pa.chunked_array(
            [pa.array(p, pa.int64()) for p in parts], pa.int64()
        ).to_pylist()
    else:
        array = pa.chunked_array([pa.array(p, kind) for p in parts], kind)
        expected = array.to_pylist()
    got = sqlite_module._python_values(array)
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]
    assert [repr(v) for v in got] == [repr(v) for v in expected]  # -0.0 stays -0.0

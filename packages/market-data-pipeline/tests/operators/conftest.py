"""Shared fixtures of the operator tests: columnar trade tables from compact rows."""

from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from market_data_core.testing import T0
from market_data_core.timestamps import to_ns
from market_data_pipeline import records

TradeRow = tuple[str, float, float, float]
"""``(symbol, seconds after t0, price, size)``."""

MakeTrades = Callable[..., pa.Table]


def trades_table(
    rows: Sequence[TradeRow], *, t0: datetime = T0, as_of: Sequence[int | None] | None = None
) -> pa.Table:
    """A ``records.TRADES`` table; times are whole nanoseconds after ``t0``; ``as_of`` (ns
    after ``t0``, per row) is null unless given."""
    base = to_ns(t0)
    nanos = np.array([base + round(r[1] * 1_000_000_000) for r in rows], dtype=np.int64)
    given = {
        "symbol": pa.array([r[0] for r in rows], pa.string()),
        "ts": pa.array(nanos, pa.int64()).cast(records.TIMESTAMP),
        "price": pa.array([float(r[2]) for r in rows], pa.float64()),
        "size": pa.array([float(r[3]) for r in rows], pa.float64()),
    }
    if as_of is not None:
        versions = [None if a is None else base + a for a in as_of]
        given["as_of"] = pa.array(versions, pa.int64()).cast(records.TIMESTAMP)
    return with_nulls(given, records.TRADES)


def with_nulls(columns: dict[str, pa.Array], schema: pa.Schema) -> pa.Table:
    """A table of ``schema``: the given columns, the others null."""
    n = len(next(iter(columns.values())))
    arrays = [columns.get(f.name, pa.nulls(n, f.type)) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


@pytest.fixture(scope="session")
def make_trades() -> MakeTrades:
    """``make_trades([(symbol, seconds, price, size), ...])`` -> a trades table."""
    return trades_table

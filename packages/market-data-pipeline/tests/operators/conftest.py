"""Shared fixtures of the operator tests: columnar trade tables from compact rows."""

from collections.abc import Callable, Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from market_data_core.testing import T0
from market_data_pipeline import records

TradeRow = tuple[str, float, float, float]
"""``(symbol, seconds after t0, price, size)``."""

MakeTrades = Callable[..., pa.Table]


def trades_table(rows: Sequence[TradeRow], *, t0: datetime = T0) -> pa.Table:
    """A ``records.TRADES`` table; times are whole microseconds after ``t0``."""
    base = int(t0.timestamp()) * 1_000_000
    n = len(rows)
    micros = np.array([base + round(r[1] * 1_000_000) for r in rows], dtype=np.int64)
    return pa.table(
        {
            "symbol": pa.array([r[0] for r in rows], pa.string()),
            "ts": pa.array(micros, pa.int64()).cast(records.TIMESTAMP),
            "price": pa.array([float(r[2]) for r in rows], pa.float64()),
            "size": pa.array([float(r[3]) for r in rows], pa.float64()),
            "exchange": pa.nulls(n, pa.string()),
            "trade_id": pa.nulls(n, pa.string()),
            "side": pa.nulls(n, pa.string()),
            "conditions": pa.nulls(n, pa.list_(pa.string())),
        },
        schema=records.TRADES,
    )


@pytest.fixture(scope="session")
def make_trades() -> MakeTrades:
    """``make_trades([(symbol, seconds, price, size), ...])`` -> a trades table."""
    return trades_table

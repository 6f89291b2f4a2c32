"""The simple model of what a store must hold: row by row, no Arrow, no SQL.

A store keeps, of every key, the version with the highest ``(as_of, revision)``; between
versions of equal ``(as_of, revision)`` the greater values (compared field by field in
``market_data_core.columns.VALUES`` order, a missing value below any value, text by its
code points, a trade's conditions and a signal's metadata as the JSON text the store keeps).
Tests hold stores to this model whatever the order, batching, retries or crashes of the
writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from market_data_core.bars import Bar
from market_data_core.signals import Signal
from market_data_core.ticks import Quote, Trade
from market_data_core.timestamps import to_ns

__all__ = ["key_of", "newest", "rank_of", "version_of"]

_VALUES: dict[type[Any], tuple[str, ...]] = {
    Bar: ("open", "high", "low", "close", "volume", "trade_count", "vwap"),
    Trade: ("price", "size", "side", "conditions", "received_at"),
    Quote: ("bid", "ask", "bid_size", "ask_size", "received_at"),
    Signal: ("value", "score", "metadata"),
}


def key_of(record: Any) -> tuple[Any, ...]:
    """What identifies ``record`` in a store (a missing exchange or id as the store keeps
    it, timestamps as integer nanoseconds)."""
    if isinstance(record, Bar):
        return ("bars", record.source, record.symbol, str(record.timeframe), to_ns(record.start))
    if isinstance(record, Trade):
        return (
            "trades", record.symbol, to_ns(record.ts), record.exchange or "",
            record.trade_id or "", record.ordinal or 0,
        )  # fmt: skip
    if isinstance(record, Quote):
        sequence = -1 if record.sequence is None else record.sequence
        return (
            "quotes", record.symbol, to_ns(record.ts), record.exchange or "", sequence,
            record.ordinal or 0,
        )  # fmt: skip
    return ("signals", record.source, record.symbol, record.name, to_ns(record.ts))


def version_of(record: Any) -> tuple[int, int]:
    """``(as_of in nanoseconds, revision)``; ``as_of`` must be set."""
    return to_ns(record.as_of), record.revision


def _value(name: str, value: Any) -> Any:
    if value is None:
        return (False, 0)
    if name == "conditions":
        return (True, json.dumps(list(value))) if value else (False, 0)
    if name == "metadata":
        return (True, json.dumps(value, sort_keys=True) if value else "{}")
    if name == "received_at":
        return (True, to_ns(value))
    return (True, str(value) if name == "side" else value)


def rank_of(record: Any) -> tuple[Any, ...]:
    """The order of versions of one key: the greatest is the one a store keeps."""
    values = tuple(_value(n, getattr(record, n)) for n in _VALUES[type(record)])
    return (*version_of(record), values)


def newest(records: Iterable[Any]) -> dict[tuple[Any, ...], Any]:
    """Per key, the version a store must hold after all of ``records`` were written, in
    any order and any batches (every record must have ``as_of``)."""
    kept: dict[tuple[Any, ...], Any] = {}
    for record in records:
        key = key_of(record)
        if key not in kept or rank_of(record) > rank_of(kept[key]):
            kept[key] = record
    return kept

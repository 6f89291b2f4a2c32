"""Signals: named numeric outputs of models or rules about a symbol at a time."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from market_data_core._base import InputModel
from market_data_core._types import FinitePrice, Identifier, Symbol, Text
from market_data_core._versioned import AsOf, Revision, WhyWritten
from market_data_core.timestamps import UtcTimestamp

__all__ = ["Signal", "SignalValue"]

SignalValue = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
"""A JSON scalar (finite floats): the values of details and metadata maps."""

_StoredValue = Text | int | Annotated[float, Field(allow_inf_nan=False)] | bool | None
"""A signal's metadata value: a JSON scalar that every store can keep (text without NUL)."""
_MetadataKey = Annotated[Text, StringConstraints(min_length=1, max_length=64)]


class Signal(InputModel):
    """``name`` = ``value`` for ``symbol`` at ``ts``; ``score`` is an optional confidence."""

    source: Identifier
    symbol: Symbol
    ts: UtcTimestamp
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,63}$")]
    value: FinitePrice
    score: Annotated[float, Field(allow_inf_nan=False)] | None = None
    metadata: dict[
        Annotated[Text, StringConstraints(min_length=1, max_length=64)], _StoredValue
    ] = Field(default_factory=dict)
    as_of: AsOf = None
    revision: Revision = 0
    reason: WhyWritten = None

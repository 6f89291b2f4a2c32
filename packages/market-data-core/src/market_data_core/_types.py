"""Annotated field types shared by the contracts (private; re-exported where public)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

__all__ = [
    "SYMBOL_PATTERN",
    "FinitePrice",
    "Identifier",
    "NonNegativeFinite",
    "Symbol",
    "UtcDatetime",
    "to_utc",
]

SYMBOL_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9._:/=^+\-]{0,63}$"
"""Letters, digits and the separators venues use (``BTC/USDT``, ``6EH4.XCME``, ``ES=F``,
``^GSPC``); no spaces; at most 64 characters."""


def to_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC (the same instant, ``tzinfo=UTC``)."""
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(to_utc)]
"""A timezone-aware datetime, normalised to UTC. Naive datetimes are rejected."""

Symbol = Annotated[str, StringConstraints(pattern=SYMBOL_PATTERN)]
"""An instrument symbol: see ``SYMBOL_PATTERN``."""

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
]
"""A name of a component, node, provider or coordinator: no spaces, at most 128 characters."""

FinitePrice = Annotated[float, Field(allow_inf_nan=False)]
"""A finite float (NaN and infinities rejected). Prices may be negative (spreads)."""

NonNegativeFinite = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A finite float >= 0: sizes and volumes."""

"""Annotated field types shared by the contracts (private; re-exported where public)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints

__all__ = [
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "SYMBOL_PATTERN",
    "FinitePrice",
    "Identifier",
    "NonNegativeFinite",
    "Symbol",
    "Text",
    "TextDatetime",
    "UtcDatetime",
    "check_text",
    "clamp_utc",
    "to_utc",
    "written_time",
]

MIN_TIMESTAMP = datetime(1678, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2262, 1, 1, tzinfo=UTC)
"""Contract timestamps lie in ``[MIN_TIMESTAMP, MAX_TIMESTAMP)``: the years that int64
nanoseconds since the epoch can hold (Arrow, pandas and numpy timestamps), with room for a
window's end. Every store keeps that range as it is: nothing near ``datetime.min`` or
``datetime.max``, which PostgreSQL drivers turn into -infinity and infinity, and no offset
that overflows the year 9999 on the way to UTC."""

SYMBOL_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9._:/=^+\-]{0,63}$"
"""Letters, digits and the separators venues use (``BTC/USDT``, ``6EH4.XCME``, ``ES=F``,
``^GSPC``); no spaces; at most 64 characters."""


def to_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC (the same instant, ``tzinfo=UTC``); ``ValueError``
    when the instant has no UTC date (before year 1 or after 9999)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        msg = f"timestamp {value.isoformat()} is out of range"
        raise ValueError(msg) from None


def clamp_utc(value: datetime) -> datetime:
    """An aware datetime in UTC, clamped into ``[MIN_TIMESTAMP, MAX_TIMESTAMP]``: the bound
    of a query range, where "from year 1 to 9999" means "everything"."""
    if value < MIN_TIMESTAMP:
        return MIN_TIMESTAMP
    if value >= MAX_TIMESTAMP:
        return MAX_TIMESTAMP
    return value.astimezone(UTC)


def check_text(value: str) -> str:
    """``value`` when every store can keep it: no NUL character (PostgreSQL text cannot
    hold one) and no lone surrogate (not encodable as UTF-8); else ``ValueError``."""
    position = value.find("\x00")
    if position >= 0:
        msg = f"text contains a NUL character (\\x00) at position {position}"
        raise ValueError(msg)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = f"text contains a lone surrogate at position {exc.start}: not valid Unicode"
        raise ValueError(msg) from None
    return value


UtcDatetime = Annotated[
    AwareDatetime, Field(ge=MIN_TIMESTAMP, lt=MAX_TIMESTAMP), AfterValidator(to_utc)
]
"""A timezone-aware datetime, normalised to UTC, in ``[MIN_TIMESTAMP, MAX_TIMESTAMP)``.
Naive datetimes are rejected."""


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def written_time(value: object) -> object:
    """A time as a caller writes it: a datetime or an RFC 3339 string, never a number (which
    pydantic would take as seconds, or milliseconds, since 1970)."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        msg = "a time is an RFC 3339 string (2024-01-02T14:30:00Z), not a number"
        raise ValueError(msg)
    return value


TextDatetime = Annotated[UtcDatetime, BeforeValidator(written_time)]
"""``UtcDatetime`` as an HTTP request gives it: a string (or a datetime), never a number."""


Text = Annotated[str, AfterValidator(check_text)]
"""Free text that every store can keep: see ``check_text``."""

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

"""The version every stored market-data record carries (private; see docs/store.md).

A version orders what is known about one key: ``(as_of, revision)``. ``as_of`` is when
the writer's input was known (a live feed's receive time, a file's as-of time), never the
wall clock of a run, so replaying the same input gives the same versions; ``revision``
orders versions of equal ``as_of`` (how much input a bar has seen; a tick's correction
number). A store keeps the highest version of every key, whatever the order in which
writes arrive; ``reason`` says why a version was written (``late``, ``backfill``,
``correction``...). A record without ``as_of`` is versioned by the store with the time it
received it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from market_data_core._types import Text
from market_data_core.timestamps import UtcTimestamp

__all__ = ["MAX_REVISION", "AsOf", "Reason", "Revision", "WhyWritten"]

MAX_REVISION = 2**63 - 1
"""A SQL BIGINT."""

Reason = Annotated[Text, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]
"""Why a version was written: short text, no control characters."""


AsOf = Annotated[
    UtcTimestamp | None,
    Field(
        description=(
            "When the input of this record was known (a live feed's receive time, a file's "
            "as-of time); with `revision`, orders the versions of one key: the store keeps "
            "the highest. Absent: the store uses the time it received the record."
        )
    ),
]
Revision = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_REVISION,
        description=(
            "Orders versions with the same `as_of`: a bar's count of input records, a "
            "tick's correction number."
        ),
    ),
]
WhyWritten = Annotated[
    Reason | None,
    Field(description="Why this version was written: late, backfill, correction..."),
]

"""Bar timeframes: parsing (``"1s"``, ``"5m"``, ``"1h"``, ``"1d"``) and window alignment.

Windows are aligned to the UNIX epoch in UTC. A timeframe must divide one day evenly, so
every window also starts on a UTC midnight boundary: ``5m`` windows start at
``00:00, 00:05, ...`` of every day, ``1d`` windows at midnight UTC. This is the same
alignment as pandas' ``resample`` with its default origin, which the tests use as an oracle.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import total_ordering
from typing import Any, ClassVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from market_data_core.exceptions import TimeframeError

__all__ = ["Timeframe"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_DAY = 86_400
_UNITS: dict[str, int] = {"d": _DAY, "h": 3_600, "m": 60, "s": 1}
_PATTERN = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")


@total_ordering
class Timeframe:
    """A bar duration that divides a UTC day; immutable, hashable and ordered by length.

    >>> tf = Timeframe.parse("5m")
    >>> tf.seconds, str(tf)
    (300, '5m')
    >>> tf.floor(datetime(2024, 1, 2, 9, 33, 12, tzinfo=UTC)).isoformat()
    '2024-01-02T09:30:00+00:00'
    """

    __slots__ = ("_micros", "_seconds")
    PATTERN: ClassVar[str] = _PATTERN.pattern

    def __init__(self, seconds: int) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            msg = f"timeframe seconds must be an int, got {type(seconds).__name__}"
            raise TimeframeError(msg)
        if not 1 <= seconds <= _DAY or _DAY % seconds:
            msg = (
                f"timeframe of {seconds}s does not divide one day evenly; use one of the "
                "divisors of 86400 seconds such as 1s, 5s, 1m, 5m, 15m, 1h, 4h or 1d"
            )
            raise TimeframeError(msg)
        self._seconds = seconds
        self._micros = seconds * 1_000_000

    @classmethod
    def parse(cls, text: object) -> Timeframe:
        """Parse ``"<n><unit>"`` with unit ``s``, ``m``, ``h`` or ``d`` (``"90s"`` == ``"1m30s"``
        is not accepted; ``"90s"`` is)."""
        if isinstance(text, Timeframe):
            return text
        if not isinstance(text, str):
            msg = f"timeframe must be a string such as '5m', got {type(text).__name__}"
            raise TimeframeError(msg)
        match = _PATTERN.fullmatch(text)  # match() would take "1m\n": $ matches before \n
        if match is None:
            msg = (
                f"invalid timeframe {text!r}: expected a positive count and a unit "
                "s, m, h or d (lower case), such as '1s', '5m', '1h' or '1d'"
            )
            raise TimeframeError(msg)
        return cls(int(match.group(1)) * _UNITS[match.group(2)])

    @property
    def seconds(self) -> int:
        return self._seconds

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self._seconds)

    @property
    def pandas_rule(self) -> str:
        """A pandas offset alias for the same duration, in seconds (``"300s"`` for 5m)."""
        return f"{self._seconds}s"

    def floor(self, ts: datetime) -> datetime:
        """Start of the window that contains ``ts`` (in UTC)."""
        micros = _to_epoch_micros(ts)
        return _EPOCH + (micros - micros % self._micros) * _ONE_MICROSECOND

    def ceil(self, ts: datetime) -> datetime:
        """``ts`` itself when aligned, else the start of the next window."""
        start = self.floor(ts)
        return start if start == ts else start + self.delta

    def window(self, ts: datetime) -> tuple[datetime, datetime]:
        """``(start, end)`` of the window containing ``ts``: start inclusive, end exclusive."""
        start = self.floor(ts)
        return start, start + self.delta

    def is_aligned(self, ts: datetime) -> bool:
        return _to_epoch_micros(ts) % self._micros == 0

    def divides(self, other: Timeframe) -> bool:
        """True when windows of ``other`` are made of whole windows of ``self``."""
        return other.seconds % self._seconds == 0

    def __str__(self) -> str:
        for unit, size in _UNITS.items():
            if self._seconds % size == 0:
                return f"{self._seconds // size}{unit}"
        raise AssertionError("unreachable: 's' divides every timeframe")  # pragma: no cover

    def __repr__(self) -> str:
        return f"Timeframe({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Timeframe):
            return self._seconds == other._seconds
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Timeframe):
            return self._seconds < other._seconds
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Timeframe", self._seconds))

    def __reduce__(self) -> tuple[type[Timeframe], tuple[int]]:
        return (Timeframe, (self._seconds,))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(
                str, when_used="json-unless-none"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": cls.PATTERN,
            "description": "Bar duration that divides a UTC day: <count><s|m|h|d>.",
            "examples": ["1m", "5m", "1h", "1d"],
        }


def _to_epoch_micros(ts: datetime) -> int:
    if ts.tzinfo is None or ts.utcoffset() is None:
        msg = f"timestamp {ts.isoformat()} is naive; pass a timezone-aware (UTC) datetime"
        raise TimeframeError(msg)
    return (ts - _EPOCH) // _ONE_MICROSECOND

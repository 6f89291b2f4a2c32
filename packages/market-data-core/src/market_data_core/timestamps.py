"""Timestamps to the nanosecond.

A Python ``datetime`` holds microseconds; market data is stamped in nanoseconds (exchange
feeds, Databento, Tardis, Nautilus). :class:`NanoDatetime` is a ``datetime`` that also
carries the nanoseconds within its microsecond (``nanosecond``, 0-999), as
``pandas.Timestamp`` does: it compares, hashes, sorts, adds and prints to the nanosecond,
and equals a plain ``datetime`` when its ``nanosecond`` is 0.

The contracts' event times (:data:`UtcTimestamp`) accept an ISO 8601 string with up to nine
fractional digits, a ``datetime``, a ``pandas.Timestamp`` or a ``numpy.datetime64``, and
give a ``datetime`` (a :class:`NanoDatetime` when there are nanoseconds); JSON carries the
nine digits (``"2024-01-02T14:30:00.123456789Z"``). Nothing is ever truncated silently: a
string with more than nine fractional digits is an error.

>>> ts = parse_timestamp("2024-01-02T14:30:00.123456789Z")
>>> ts.nanosecond, to_ns(ts)
(789, 1704205800123456789)
>>> from_ns(to_ns(ts)) == ts
True
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    WrapSerializer,
)

from market_data_core._types import MAX_TIMESTAMP, MIN_TIMESTAMP, clamp_utc, written_time

__all__ = [
    "NanoDatetime",
    "RangeDatetime",
    "UtcTimestamp",
    "from_ns",
    "nanosecond_of",
    "parse_timestamp",
    "to_ns",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_FRACTION: Final = re.compile(r"^(?P<head>.*[T ]\d{2}:\d{2}:\d{2})[.,](?P<digits>\d+)(?P<tail>.*)$")


class NanoDatetime(datetime):
    """A ``datetime`` with nanoseconds: ``nanosecond`` is the part below the microsecond
    (0-999). Arithmetic with a ``timedelta`` keeps it; the difference of two datetimes is a
    ``timedelta`` (microseconds); :func:`to_ns` gives the exact integer."""

    __slots__ = ("_nanosecond",)
    _nanosecond: int

    def __new__(
        cls,
        year: int,
        month: int,
        day: int,
        hour: int = 0,
        minute: int = 0,
        second: int = 0,
        microsecond: int = 0,
        tzinfo: Any = None,
        *,
        fold: int = 0,
        nanosecond: int = 0,
    ) -> Self:
        if not 0 <= nanosecond <= 999:
            msg = f"nanosecond must be in 0..999, got {nanosecond}"
            raise ValueError(msg)
        self = super().__new__(
            cls, year, month, day, hour, minute, second, microsecond, tzinfo, fold=fold
        )
        self._nanosecond = nanosecond
        return self

    @classmethod
    def combine_ns(cls, value: datetime, nanosecond: int) -> datetime:
        """``value`` with ``nanosecond`` (a plain ``datetime`` when it is 0)."""
        if nanosecond == 0:
            return _plain(value)
        return cls(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, value.tzinfo, fold=value.fold, nanosecond=nanosecond,
        )  # fmt: skip

    @property
    def nanosecond(self) -> int:
        return self._nanosecond

    def _key(self) -> tuple[datetime, int]:
        return _plain(self), self._nanosecond

    # comparisons: to the nanosecond, against plain datetimes (nanosecond 0) too
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, datetime):
            return NotImplemented
        return bool(_plain(self) == _plain(other)) and self._nanosecond == nanosecond_of(other)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __lt__(self, other: datetime) -> bool:  # type: ignore[override]
        if not isinstance(other, datetime):
            return NotImplemented
        return self._key() < (_plain(other), nanosecond_of(other))

    def __le__(self, other: datetime) -> bool:  # type: ignore[override]
        if not isinstance(other, datetime):
            return NotImplemented
        return self._key() <= (_plain(other), nanosecond_of(other))

    def __gt__(self, other: datetime) -> bool:  # type: ignore[override]
        if not isinstance(other, datetime):
            return NotImplemented
        return self._key() > (_plain(other), nanosecond_of(other))

    def __ge__(self, other: datetime) -> bool:  # type: ignore[override]
        if not isinstance(other, datetime):
            return NotImplemented
        return self._key() >= (_plain(other), nanosecond_of(other))

    def __hash__(self) -> int:
        plain = _plain(self)
        return hash(plain) if self._nanosecond == 0 else hash((plain, self._nanosecond))

    # arithmetic with timedeltas keeps the nanoseconds
    def __add__(self, other: timedelta) -> datetime:  # type: ignore[override]
        if not isinstance(other, timedelta):
            return NotImplemented
        return NanoDatetime.combine_ns(_plain(self) + other, self._nanosecond)

    __radd__ = __add__  # type: ignore[assignment]

    def __sub__(self, other: Any) -> Any:
        if isinstance(other, timedelta):
            return NanoDatetime.combine_ns(_plain(self) - other, self._nanosecond)
        if isinstance(other, datetime):
            return _plain(self) - _plain(other)
        return NotImplemented

    def astimezone(self, tz: Any = None) -> datetime:  # type: ignore[override]
        return NanoDatetime.combine_ns(_plain(self).astimezone(tz), self._nanosecond)

    def replace(self, *args: Any, nanosecond: int | None = None, **kwargs: Any) -> datetime:  # type: ignore[override]
        ns = self._nanosecond if nanosecond is None else nanosecond
        return NanoDatetime.combine_ns(_plain(self).replace(*args, **kwargs), ns)

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        """As ``datetime.isoformat``, with nine fractional digits when there are
        nanoseconds (``timespec`` ``auto`` or ``nanoseconds``)."""
        if self._nanosecond == 0 or timespec not in ("auto", "nanoseconds"):
            return _plain(self).isoformat(sep, "auto" if timespec == "nanoseconds" else timespec)
        return _insert_nanos(_plain(self).isoformat(sep, "microseconds"), self._nanosecond)

    def __str__(self) -> str:
        return self.isoformat(" ")

    def __repr__(self) -> str:
        return f"NanoDatetime({_plain(self)!r}, nanosecond={self._nanosecond})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (NanoDatetime.combine_ns, (_plain(self), self._nanosecond))

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return self.__reduce__()

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: Any) -> Self:
        return self


def _plain(value: datetime) -> datetime:
    """``value`` as a plain ``datetime`` (microseconds)."""
    if type(value) is datetime:
        return value
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond, value.tzinfo, fold=value.fold,
    )  # fmt: skip


def _insert_nanos(text: str, nanosecond: int) -> str:
    """An ISO text with six fractional digits, given three more."""
    match = _FRACTION.match(text)
    if match is None:  # no fraction in the text: add one
        head, tail = text[:19], text[19:]
        return f"{head}.000000{nanosecond:03d}{tail}"
    return f"{match['head']}.{match['digits'][:6]:0<6}{nanosecond:03d}{match['tail']}"


def nanosecond_of(value: datetime) -> int:
    """The nanoseconds below the microsecond of any datetime (``pandas.Timestamp`` and
    :class:`NanoDatetime` carry them; a plain ``datetime`` has 0)."""
    return int(getattr(value, "nanosecond", 0))


def to_ns(value: datetime) -> int:
    """Nanoseconds since the epoch (UTC) of an aware datetime, exactly."""
    if value.tzinfo is None:
        msg = f"timestamp {value!r} has no timezone"
        raise ValueError(msg)
    return ((_plain(value) - _EPOCH) // _US) * 1000 + nanosecond_of(value)


def from_ns(value: int) -> datetime:
    """The UTC datetime of nanoseconds since the epoch (a :class:`NanoDatetime` when they
    are not whole microseconds)."""
    micros, nanosecond = divmod(int(value), 1000)
    return NanoDatetime.combine_ns(_EPOCH + micros * _US, nanosecond)


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 timestamp with up to nine fractional digits, exactly (a naive one stays
    naive: the caller decides). More than nine digits is a ``ValueError``."""
    match = _FRACTION.match(text.strip())
    if match is None:
        return datetime.fromisoformat(text)
    digits = match["digits"]
    if len(digits) > 9:
        msg = f"timestamp {text!r} has {len(digits)} fractional digits: at most 9 (nanoseconds)"
        raise ValueError(msg)
    digits = digits.ljust(9, "0")
    base = datetime.fromisoformat(f"{match['head']}.{digits[:6]}{_zone(match['tail'])}")
    return NanoDatetime.combine_ns(base, int(digits[6:]))


def _zone(tail: str) -> str:
    return "+00:00" if tail in ("Z", "z") else tail


def _exact(value: Any) -> Any:
    """Before the model's datetime validation: keep what it would truncate. Text is parsed
    here (ISO 8601, up to nine fractional digits; what is not ISO is left to the model's
    own parser, which names the error), so JSON's strict mode sees a datetime."""
    if isinstance(value, str):
        return _exact_text(value)
    if isinstance(value, datetime):
        if type(value) in (datetime, NanoDatetime):
            return value
        return NanoDatetime.combine_ns(value, nanosecond_of(value))  # e.g. pandas.Timestamp
    if type(value).__name__ == "datetime64":  # numpy, without importing it
        return _from_datetime64(value)
    return value


def _exact_text(value: str) -> Any:
    match = _FRACTION.match(value.strip())
    if match is not None and len(match["digits"]) > 9:
        return parse_timestamp(value)  # raises, naming the digits
    try:
        return parse_timestamp(value)
    except ValueError:
        return value


def _from_datetime64(value: Any) -> datetime:
    nanos = int(value.astype("datetime64[ns]").astype("int64"))
    return from_ns(nanos)


def _serialize(
    value: datetime, handler: SerializerFunctionWrapHandler, info: SerializationInfo
) -> Any:
    out = handler(value)
    nanosecond = nanosecond_of(value)
    if nanosecond and isinstance(out, str):
        return _insert_nanos(out, nanosecond)
    return out


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        msg = f"timestamp {value.isoformat()} is out of range"
        raise ValueError(msg) from None


UtcTimestamp = Annotated[
    AwareDatetime,
    Field(ge=MIN_TIMESTAMP, lt=MAX_TIMESTAMP),
    BeforeValidator(_exact),
    AfterValidator(_to_utc),
    WrapSerializer(_serialize),
]
"""An event time to the nanosecond: timezone-aware, normalised to UTC, in
``[MIN_TIMESTAMP, MAX_TIMESTAMP)``; a :class:`NanoDatetime` when it has nanoseconds. JSON
carries up to nine fractional digits."""

RangeDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_exact),
    BeforeValidator(written_time),  # runs first: a number is refused before it is parsed
    AfterValidator(clamp_utc),
]
"""A bound of a query range as an HTTP request gives it (never a number), to the
nanosecond (a :class:`NanoDatetime` when it has them), clamped into
``[MIN_TIMESTAMP, MAX_TIMESTAMP]`` (see ``clamp_utc``)."""

"""What a read asks for, checked once, and the SQL that answers it on either database.

A ``ReadQuery`` is a kind (bars of a timeframe, trades, quotes), some symbols or all of
them, a half-open time range [start, end) exact to the nanosecond, and optionally the
versions as the store knew them at a time (``as_known_at``). Its rows come ordered by
symbol, then time, then the rest of the key: each symbol's series is contiguous and in
time order, the order of the tables' keys, so a database streams them without sorting.

The database filters on whole microseconds (its ``ts`` column); the nanoseconds below
are checked on the Arrow batches (``exact``), so a bound between two ticks of one
microsecond falls where it should.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, cast

import pyarrow as pa
import pyarrow.compute as pc

from market_data_core import MAX_TIMESTAMP, MIN_TIMESTAMP, clamp_utc
from market_data_core.columns import Kind
from market_data_core.timeframe import Timeframe
from market_data_core.timestamps import parse_timestamp, to_ns
from market_data_store.backends._layout import LAYOUTS, ORDER
from market_data_store.exceptions import HistoryUnavailableError, ReadError

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

__all__ = ["READ_KINDS", "ReadQuery", "TimeBound", "check_known_at"]

READ_KINDS: Final = (Kind.BARS, Kind.TRADES, Kind.QUOTES)
MIN_NS: Final = to_ns(MIN_TIMESTAMP)
MAX_NS: Final = to_ns(MAX_TIMESTAMP)
"""A read's range lies in the contract's (``MIN_TIMESTAMP``...``MAX_TIMESTAMP``): a bound
outside it, or none, reads everything on that side."""

TimeBound = datetime | date | str | None
"""A bound of a read's range: an aware datetime (``pandas.Timestamp`` included, with its
nanoseconds), a naive one or a date (read as UTC), ISO 8601 text (up to nine fractional
digits; without an offset: UTC), or ``None`` (unbounded)."""


def _ns(value: object, what: str, default: int) -> int:
    """A bound in nanoseconds (callers without types may pass anything: checked)."""
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = parse_timestamp(value)
        except ValueError as exc:
            msg = f"{what} {value!r} is not an ISO 8601 time: {exc}"
            raise ReadError(msg) from None
    if not isinstance(value, datetime):  # a date: its midnight, UTC
        if not isinstance(value, date):
            msg = f"{what} must be a datetime, a date or ISO 8601 text, not {type(value).__name__}"
            raise ReadError(msg)
        value = datetime.combine(value, time(), UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return min(max(to_ns(value), MIN_NS), MAX_NS)
    except (OverflowError, ValueError) as exc:
        msg = f"{what} {value!r} is out of range: {exc}"
        raise ReadError(msg) from None


def check_known_at(as_known_at: datetime | None, retention_days: float) -> datetime | None:
    """``as_known_at`` in UTC, checked against the history kept: ``HistoryUnavailableError``
    when it is older than ``retention_days`` (the versions replaced before it may be
    purged), ``ValueError`` without a timezone."""
    if as_known_at is None:
        return None
    if as_known_at.tzinfo is None:
        msg = "as_known_at needs a timezone (UTC)"
        raise ValueError(msg)
    horizon = datetime.now(UTC) - timedelta(days=retention_days)
    if as_known_at < horizon:
        msg = (
            f"as_known_at {as_known_at.isoformat()} is older than the history kept"
            f" ({retention_days:g} days, since {horizon.isoformat(timespec='seconds')};"
            " MDS_HISTORY_RETENTION_DAYS)"
        )
        raise HistoryUnavailableError(msg)
    return clamp_utc(as_known_at)


def _symbols(symbols: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if symbols is None:
        return None
    chosen: tuple[object, ...] = (symbols,) if isinstance(symbols, str) else tuple(symbols)
    for symbol in chosen:
        if not isinstance(symbol, str) or not symbol or "\x00" in symbol:
            msg = f"symbol {symbol!r} is not a symbol: non-empty text without NUL characters"
            raise ReadError(msg)
    if not chosen:
        msg = "symbols is empty: give at least one symbol, or None for every symbol"
        raise ReadError(msg)
    return tuple(dict.fromkeys(cast("tuple[str, ...]", chosen)))


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """A checked read: ``start_ns`` / ``end_ns`` are nanoseconds since the epoch."""

    kind: Kind
    symbols: tuple[str, ...] | None
    start_ns: int
    end_ns: int
    timeframe: str | None = None
    source: str | None = None
    known_ns: int | None = None

    @staticmethod
    def kind_of(kind: Kind | str) -> Kind:
        """The kind named, if a read can ask for it (bars, trades, quotes)."""
        try:
            chosen = Kind(kind)
        except ValueError:
            chosen = None
        if chosen not in READ_KINDS:
            msg = f"kind {kind!r} cannot be read: bars, trades or quotes"
            raise ReadError(msg)
        assert chosen is not None
        return chosen

    @classmethod
    def of(
        cls,
        kind: Kind | str,
        symbols: str | Iterable[str] | None = None,
        start: TimeBound = None,
        end: TimeBound = None,
        *,
        timeframe: str | None = None,
        source: str | None = None,
        as_known_at: TimeBound = None,
    ) -> ReadQuery:
        kind = cls.kind_of(kind)
        if kind is Kind.BARS:
            if timeframe is None:
                msg = "a read of bars needs a timeframe, e.g. timeframe='5m'"
                raise ReadError(msg)
            try:
                timeframe = str(Timeframe.parse(timeframe))
            except ValueError as exc:
                msg = f"timeframe {timeframe!r} is not a timeframe: {exc}"
                raise ReadError(msg) from None
        elif timeframe is not None or source is not None:
            msg = f"timeframe and source select bars, not {kind}"
            raise ReadError(msg)
        start_ns, end_ns = _ns(start, "start", MIN_NS), _ns(end, "end", MAX_NS)
        if end_ns < start_ns:
            msg = f"end ({end}) is before start ({start})"
            raise ReadError(msg)
        known = None if as_known_at is None else _ns(as_known_at, "as_known_at", 0)
        return cls(kind, _symbols(symbols), start_ns, end_ns, timeframe, source, known)

    # -- SQL ---------------------------------------------------------------------------

    def sql(self, dialect: str) -> tuple[str, list[Any]]:
        """The SELECT of the table's columns (the store's layout) and its parameters
        (``?`` for SQLite; PostgreSQL's has none: ADBC streams a query without parameters
        through binary COPY, so the values are written as literals, quoted by ``literal``)."""
        sqlite = dialect == "sqlite"
        layout = LAYOUTS[self.kind]
        names = ", ".join(f'"{c}"' for c in layout.columns)
        where, params = self._where(sqlite)
        order = f'ORDER BY "symbol", {ORDER[self.kind]}'
        if self.known_ns is None:
            return f"SELECT {names} FROM {layout.name} WHERE {where} {order}", params
        known, known_params = _value(self.known_ns // 1000, sqlite, time=True)
        current = f"SELECT {names} FROM {layout.name} WHERE {where} AND ingested_at <= {known}"
        history = (
            f"SELECT {names} FROM {layout.history} WHERE {where}"
            f" AND ingested_at <= {known} AND superseded_at > {known}"
        )
        params = [*params, *known_params, *params, *known_params, *known_params]
        return f"{current} UNION ALL {history} {order}", params

    def _where(self, sqlite: bool) -> tuple[str, list[Any]]:
        conditions: list[str] = []
        params: list[Any] = []

        def add(template: str, *values: Any, time: bool = False) -> None:
            texts = []
            for item in values:
                text, more = _value(item, sqlite, time=time)
                texts.append(text)
                params.extend(more)
            conditions.append(template.format(", ".join(texts)))

        column = f'"{LAYOUTS[self.kind].time}"'
        if self.start_ns > MIN_NS:
            add(f"{column} >= {{}}", self.start_ns // 1000, time=True)
        if self.end_ns < MAX_NS:
            last = (self.end_ns - 1) // 1000 if self.end_ns > self.start_ns else None
            if last is None:
                conditions.append("false" if not sqlite else "0")
            else:
                add(f"{column} <= {{}}", last, time=True)
        if self.symbols is not None:
            add('"symbol" IN ({})', *self.symbols)
        if self.timeframe is not None:
            add('"timeframe" = {}', self.timeframe)
        if self.source is not None:
            add('"source" = {}', self.source)
        return " AND ".join(conditions) or ("true" if not sqlite else "1"), params

    # -- the nanoseconds below the database's microseconds -----------------------------

    def exact(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` without the rows outside [start, end) by the nanosecond (the SQL
        bounds are whole microseconds, widened to hold both ends)."""
        if batch.num_rows == 0:
            return batch
        times = pc.cast(batch.column(LAYOUTS[self.kind].time), pa.int64())
        first, last = pc.min_max(times).values()
        if first.as_py() >= self.start_ns and last.as_py() < self.end_ns:
            return batch
        inside = pc.and_(pc.greater_equal(times, self.start_ns), pc.less(times, self.end_ns))
        return batch.filter(inside)


def _value(item: Any, sqlite: bool, *, time: bool = False) -> tuple[str, list[Any]]:
    """A value in SQL: a ``?`` and its parameter (SQLite, times as integer microseconds),
    or a PostgreSQL literal (times: ISO 8601 text of whole microseconds, exactly)."""
    if sqlite:
        return "?", [item]
    if time:  # ISO 8601 in UTC, to the microsecond: exact
        moment = _EPOCH + timedelta(microseconds=int(item))
        return f"'{moment.isoformat(timespec='microseconds')}'::timestamptz", []
    return literal(item), []


def literal(value: str) -> str:
    """A PostgreSQL text literal (standard-conforming, quotes doubled; the reader's
    connection sets ``standard_conforming_strings``)."""
    if "\x00" in value:
        msg = "text holds a NUL character"
        raise ReadError(msg)
    return "'" + value.replace("'", "''") + "'"

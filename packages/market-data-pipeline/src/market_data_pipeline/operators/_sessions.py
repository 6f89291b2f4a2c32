"""Trading sessions of an exchange calendar, checked per batch (private; needs the
``calendars`` extra: ``exchange-calendars``, imported only when a calendar is used)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["Sessions"]

_NAT: Final = np.iinfo(np.int64).min
_MARGIN: Final = timedelta(days=7)


def _calendars() -> Any:
    try:
        import exchange_calendars  # noqa: PLC0415 - an optional extra, loaded on use
    except ImportError:
        msg = (
            "a calendar needs the exchange-calendars package "
            "(install market-data-pipeline[calendars])"
        )
        raise ValueError(msg) from None
    return exchange_calendars


class Sessions:
    """Which instants fall in a trading minute of an exchange calendar (e.g. ``XNYS``).

    A session is ``[open, close)`` minus its break, as ``exchange_calendars`` counts
    trading minutes (``side="left"``). The calendar's range grows when the data needs it.
    """

    def __init__(self, name: str) -> None:
        module = _calendars()
        names = module.get_calendar_names()
        if name not in names:
            msg = f"unknown calendar {name!r} (e.g. XNYS, XLON, XTKS; see exchange_calendars)"
            raise ValueError(msg)
        self.name = name
        self._module = module
        self._load()

    def _load(self, **bounds: Any) -> None:
        # exchange_calendars trips pandas deprecation warnings that only its maintainers
        # can act on; keep them out of users' logs (and out of warnings-as-errors tests).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            calendar = self._module.get_calendar(self.name, **bounds)
        self._calendar = calendar
        self._opens = np.asarray(calendar.opens_nanos, dtype=np.int64)
        self._closes = np.asarray(calendar.closes_nanos, dtype=np.int64)
        self._break_starts = np.asarray(calendar.break_starts_nanos, dtype=np.int64)
        self._break_ends = np.asarray(calendar.break_ends_nanos, dtype=np.int64)

    def _cover(self, low: int, high: int) -> None:
        """Extend the calendar's range to the instants ``low..high`` (ns) when it can."""
        if low >= self._opens[0] and high < self._closes[-1]:
            return
        cls = type(self._calendar)
        start = min(self._calendar.first_session, _day(low) - _MARGIN)
        end = max(self._calendar.last_session, _day(high) + _MARGIN)
        bound_min, bound_max = cls.bound_min(), cls.bound_max()
        if bound_min is not None:
            start = max(start, bound_min.tz_localize(None))
        if bound_max is not None:
            end = min(end, bound_max.tz_localize(None))
        if start < self._calendar.first_session or end > self._calendar.last_session:
            self._load(start=start, end=end)

    def mask(self, ns: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """True for each instant (nanoseconds since the epoch) inside a trading minute."""
        if len(ns) == 0:
            return np.zeros(0, dtype=np.bool_)
        self._cover(int(ns.min()), int(ns.max()))
        session = np.searchsorted(self._opens, ns, side="right") - 1
        known = session >= 0
        session = np.maximum(session, 0)
        inside = known & (ns < self._closes[session])
        break_start = self._break_starts[session]
        in_break = (break_start != _NAT) & (ns >= break_start) & (ns < self._break_ends[session])
        return np.asarray(inside & ~in_break, dtype=np.bool_)


def _day(ns: int) -> Any:
    import pandas as pd  # noqa: PLC0415 - exchange_calendars depends on pandas

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return pd.Timestamp(moment.date())

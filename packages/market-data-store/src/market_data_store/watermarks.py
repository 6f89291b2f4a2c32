"""Backpressure levels of the write queue, with hysteresis.

``Watermarks`` turns the queue's utilization (``queue_size / capacity``) into a
``BackpressureLevel`` and reports each change once. Four thresholds, ``soft_low < soft``
and ``low < high``, form two bands::

    level   enters when          leaves when
    soft    utilization >= soft  utilization <= soft_low  (to ok)
    hard    utilization >= high  utilization <= low       (to soft, or to ok when also
                                                           <= soft_low)

Inside a band the level holds: a queue that hovers around a threshold produces one event,
not one per item. ``soft_low`` defaults to ``soft * low / high``: the soft band gets the same
*relative* width as the hard band, and ``soft_low <= low`` so that leaving ``hard`` lands on
``soft`` (still draining) unless the queue is nearly empty.

``soft == high`` is allowed: the queue then goes from ``ok`` straight to ``hard``.
"""

from __future__ import annotations

import math

from market_data_core import BackpressureLevel
from market_data_store.exceptions import StoreConfigurationError

__all__ = ["Watermarks"]

_OK = BackpressureLevel.OK
_SOFT = BackpressureLevel.SOFT
_HARD = BackpressureLevel.HARD


class Watermarks:
    """A hysteresis state machine over queue utilization; see the module docstring.

    ``update(utilization)`` returns the new level when it changed and ``None`` otherwise,
    so a crossing fires exactly once. The machine starts at ``ok``.
    """

    __slots__ = ("_level", "high", "low", "soft", "soft_low")

    def __init__(
        self,
        high: float = 0.8,
        low: float = 0.5,
        soft: float = 0.6,
        *,
        soft_low: float | None = None,
    ) -> None:
        _check_fraction("high", high)
        _check_fraction("low", low)
        _check_fraction("soft", soft)
        _check_order(high=high, low=low, soft=soft)
        resolved = soft * low / high if soft_low is None else soft_low
        _check_fraction("soft_low", resolved)
        if not 0 < resolved < soft:
            msg = f"soft_low must satisfy 0 < soft_low < soft ({soft}), got {resolved}"
            raise StoreConfigurationError(msg)
        self.high = high
        self.low = low
        self.soft = soft
        self.soft_low = resolved
        self._level = _OK

    @property
    def level(self) -> BackpressureLevel:
        """The current level."""
        return self._level

    def update(self, utilization: float) -> BackpressureLevel | None:
        """Feed the current utilization; return the new level only when it changed.

        Values outside ``[0, 1]`` are clamped; NaN raises ``ValueError``.
        """
        if math.isnan(utilization):
            msg = "utilization cannot be NaN"
            raise ValueError(msg)
        level = self._next(min(max(utilization, 0.0), 1.0))
        if level is self._level:
            return None
        self._level = level
        return level

    def reset(self) -> None:
        """Back to ``ok`` (an empty queue), without reporting a change."""
        self._level = _OK

    def reason(self, utilization: float, previous: BackpressureLevel | None = None) -> str:
        """Why the level is what it is at ``utilization``, for a ``FeedbackEvent``.

        With ``previous`` (the level before a change) it names the threshold crossed, e.g.
        ``"queue 85% >= high watermark 80%"``; without, it describes the current state.
        """
        pct = f"queue {utilization:.0%}"
        level = self._level
        if previous is not None and previous.severity > level.severity:
            released = "low watermark" if previous is _HARD else "soft_low watermark"
            return f"{pct} <= {released} {_pct(self._leave(previous))}"
        if level is _OK:
            return f"{pct} < soft watermark {_pct(self.soft)}"
        name, enter = ("high", self.high) if level is _HARD else ("soft", self.soft)
        if utilization >= enter:
            return f"{pct} >= {name} watermark {_pct(enter)}"
        return f"{pct}, {level.value} until <= {_pct(self._leave(level))}"

    def _leave(self, level: BackpressureLevel) -> float:
        return self.low if level is _HARD else self.soft_low

    def _next(self, utilization: float) -> BackpressureLevel:
        if utilization >= self.high:
            return _HARD
        if self._level is _HARD:
            if utilization > self.low:
                return _HARD
            return _SOFT if utilization > self.soft_low else _OK
        if utilization >= self.soft:
            return _SOFT
        if self._level is _SOFT and utilization > self.soft_low:
            return _SOFT
        return _OK

    def __repr__(self) -> str:
        return (
            f"Watermarks(high={self.high}, low={self.low}, soft={self.soft}, "
            f"soft_low={self.soft_low}, level={self._level.value!r})"
        )


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def _check_order(*, high: float, low: float, soft: float) -> None:
    """Check ``0 < low < soft <= high <= 1``, naming the first field that breaks it."""
    problems = (  # (field, broken?, what is wrong)
        ("low", low <= 0, f"low must be > 0, got {low}"),
        ("high", high > 1, f"high must be <= 1, got {high}"),
        ("soft", soft > high, f"soft ({soft}) must be <= high ({high})"),
        ("low", low >= soft, f"low ({low}) must be < soft ({soft})"),
    )
    for name, broken, text in problems:
        if broken:
            msg = f"watermark {name}: {text} (need 0 < low < soft <= high <= 1)"
            raise StoreConfigurationError(msg)


def _check_fraction(name: str, value: float) -> None:
    try:
        finite = math.isfinite(value)
    except TypeError:
        finite = False
    if not finite:
        msg = f"watermark {name} must be a finite number, got {value!r}"
        raise StoreConfigurationError(msg)

"""Watermarks: levels with hysteresis, one report per crossing, validated thresholds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core import BackpressureLevel
from market_data_store.exceptions import StoreConfigurationError
from market_data_store.watermarks import Watermarks

OK, SOFT, HARD = BackpressureLevel.OK, BackpressureLevel.SOFT, BackpressureLevel.HARD


def feed(marks: Watermarks, values: list[float]) -> list[BackpressureLevel | None]:
    return [marks.update(value) for value in values]


def test_defaults_and_derived_soft_low() -> None:
    marks = Watermarks()
    assert (marks.high, marks.low, marks.soft) == (0.8, 0.5, 0.6)
    assert marks.soft_low == pytest.approx(0.6 * 0.5 / 0.8)
    assert marks.level is OK


def test_each_crossing_fires_once() -> None:
    marks = Watermarks(high=0.8, low=0.5, soft=0.6)
    changes = feed(marks, [0.1, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0, 0.85])
    assert changes == [None, SOFT, None, None, HARD, None, None, None]


def test_hard_holds_until_low_then_soft_then_ok_below_soft_low() -> None:
    marks = Watermarks(high=0.8, low=0.5, soft=0.6, soft_low=0.3)
    assert marks.update(0.95) is HARD  # ok straight to hard
    assert feed(marks, [0.79, 0.6, 0.51]) == [None, None, None]  # inside the hard band
    assert marks.update(0.5) is SOFT  # <= low, still above soft_low
    assert feed(marks, [0.59, 0.4, 0.31]) == [None, None, None]  # inside the soft band
    assert marks.update(0.3) is OK
    assert marks.update(0.59) is None


def test_leaving_hard_near_empty_goes_to_ok() -> None:
    marks = Watermarks(high=0.8, low=0.5, soft=0.6, soft_low=0.3)
    marks.update(0.9)
    assert marks.update(0.1) is OK


def test_soft_equal_to_high_skips_soft_on_the_way_up() -> None:
    marks = Watermarks(high=0.7, low=0.4, soft=0.7, soft_low=0.2)
    assert marks.update(0.69) is None
    assert marks.update(0.7) is HARD
    assert marks.update(0.4) is SOFT
    assert marks.update(0.69) is None
    assert marks.update(0.2) is OK


def test_out_of_range_values_clamp_and_nan_is_refused() -> None:
    marks = Watermarks()
    assert marks.update(7.0) is HARD
    assert marks.update(-1.0) is OK
    with pytest.raises(ValueError, match="NaN"):
        marks.update(float("nan"))


def test_reset_returns_to_ok_silently() -> None:
    marks = Watermarks()
    marks.update(0.9)
    marks.reset()
    assert marks.level is OK
    assert marks.update(0.1) is None


def test_reasons_name_the_threshold() -> None:
    marks = Watermarks(high=0.8, low=0.5, soft=0.6, soft_low=0.3)
    marks.update(0.85)
    assert marks.reason(0.85, OK) == "queue 85% >= high watermark 80%"
    marks.update(0.45)
    assert marks.reason(0.45, HARD) == "queue 45% <= low watermark 50%"
    marks.update(0.25)
    assert marks.reason(0.25, SOFT) == "queue 25% <= soft_low watermark 30%"
    marks.update(0.62)
    assert marks.reason(0.62, OK) == "queue 62% >= soft watermark 60%"
    assert marks.reason(0.4) == "queue 40%, soft until <= 30%"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"high": 0.8, "low": 0.0, "soft": 0.6}, "low"),
        ({"high": 1.2, "low": 0.5, "soft": 0.6}, "high"),
        ({"high": 0.6, "low": 0.5, "soft": 0.7}, "soft"),
        ({"high": 0.8, "low": 0.6, "soft": 0.6}, "low"),
        ({"high": float("nan"), "low": 0.5, "soft": 0.6}, "high"),
        ({"high": 0.8, "low": 0.5, "soft": 0.6, "soft_low": 0.6}, "soft_low"),
        ({"high": 0.8, "low": 0.5, "soft": 0.6, "soft_low": 0.0}, "soft_low"),
    ],
)
def test_invalid_thresholds_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(StoreConfigurationError, match=rf"\b{field}\b"):
        Watermarks(**kwargs)  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------

unit = st.floats(min_value=0, max_value=1, allow_nan=False)


@st.composite
def thresholds(draw: st.DrawFn) -> Watermarks:
    high = draw(st.floats(min_value=0.1, max_value=1.0))
    soft = draw(st.floats(min_value=0.05, max_value=high))
    low = draw(st.floats(min_value=0.01, max_value=soft).filter(lambda x: 0 < x < soft))
    explicit = draw(st.booleans())
    soft_low = draw(st.floats(min_value=0.001, max_value=soft).filter(lambda x: 0 < x < soft))
    return Watermarks(high=high, low=low, soft=soft, soft_low=soft_low if explicit else None)


def reference_level(marks: Watermarks, values: list[float]) -> BackpressureLevel:
    """The level by another formulation: two latches, each set at its entry threshold and
    cleared at its release threshold; hard wins over soft."""
    hard = soft = False
    for u in values:
        hard = u >= marks.high or (hard and u > marks.low)
        soft = u >= marks.soft or (soft and u > marks.soft_low)
    return HARD if hard else SOFT if soft else OK


@settings(max_examples=300)
@given(marks=thresholds(), values=st.lists(unit, max_size=60))
def test_levels_never_flap_inside_the_bands(marks: Watermarks, values: list[float]) -> None:
    level = OK
    for u in values:
        change = marks.update(u)
        if change is None:
            assert marks.level is level
            continue
        assert change is not level  # a report is a change
        if change.severity > level.severity:  # up: only at the new level's entry threshold
            assert u >= (marks.high if change is HARD else marks.soft)
        elif level is HARD:  # down from hard: only at or below low
            assert u <= marks.low
        else:  # down from soft: only at or below soft_low
            assert u <= marks.soft_low
        level = change
    assert marks.level is level
    assert level is reference_level(marks, values)

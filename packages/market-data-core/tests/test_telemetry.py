from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from market_data_core import BackpressureLevel, FeedbackEvent, MetricPoint, RateAdjustment
from market_data_core.testing import T0, make_feedback_event, make_rate_adjustment


def test_levels_order_and_default_scales() -> None:
    ok, soft, hard = BackpressureLevel.OK, BackpressureLevel.SOFT, BackpressureLevel.HARD
    assert ok.severity < soft.severity < hard.severity
    assert (ok.default_scale, soft.default_scale, hard.default_scale) == (1.0, 0.5, 0.0)
    assert BackpressureLevel.worst([ok, hard, soft]) is hard
    assert BackpressureLevel.worst([]) is ok


def test_utilization_defaults_to_queue_over_capacity() -> None:
    event = make_feedback_event(queue_size=250, capacity=1000)
    assert event.utilization == 0.25
    assert FeedbackEvent.model_validate_json(event.model_dump_json()).utilization == 0.25


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"queue_size": 1001, "capacity": 1000}, ["queue_size (1001) exceeds capacity (1000)"]),
        ({"capacity": 0}, ["capacity", "greater than 0"]),
        ({"seq": -1}, ["seq"]),
        ({"level": "panic"}, ["level", "'ok', 'soft' or 'hard'"]),
        ({"utilization": 1.5}, ["utilization", "less than or equal to 1"]),
        ({"coordinator_id": "has space"}, ["coordinator_id", "pattern"]),
    ],
)
def test_invalid_feedback_names_the_field(overrides: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ValidationError) as excinfo:
        make_feedback_event(**overrides)
    for name in names:
        assert name in str(excinfo.value)


def test_supersedes_by_seq_then_by_ts_for_heartbeats() -> None:
    first = make_feedback_event(seq=5)
    assert make_feedback_event(seq=6).supersedes(first)
    assert not make_feedback_event(seq=4, ts=T0 + timedelta(hours=1)).supersedes(first)
    heartbeat = first.model_copy(update={"ts": T0 + timedelta(seconds=5)})
    assert heartbeat.supersedes(first)
    assert not first.supersedes(first)


def test_feedback_readers_ignore_unknown_fields() -> None:
    payload = make_feedback_event().model_dump(mode="json") | {"added_in_v1_3": "x"}
    assert FeedbackEvent.model_validate(payload) == make_feedback_event()


def test_rate_adjustment_bounds_and_pause() -> None:
    assert make_rate_adjustment(scale=0).paused
    assert not make_rate_adjustment(scale=0.1).paused
    with pytest.raises(ValidationError, match="scale"):
        make_rate_adjustment(scale=1.01)
    with pytest.raises(ValidationError, match="scale"):
        make_rate_adjustment(scale=float("nan"))
    later = make_rate_adjustment(ts=T0 + timedelta(seconds=1))
    assert later.supersedes(make_rate_adjustment())
    assert not make_rate_adjustment().supersedes(later)
    assert isinstance(later, RateAdjustment)


def test_metric_point_follows_prometheus_naming() -> None:
    point = MetricPoint(
        name="store_rows_written_total", value=3, kind="counter", labels={"table": "bars"}, ts=T0
    )
    assert point.labels == {"table": "bars"}
    with pytest.raises(ValidationError, match="must end in '_total'"):
        MetricPoint(name="store_rows_written", value=3, kind="counter", ts=T0)
    with pytest.raises(ValidationError, match="cannot be negative"):
        MetricPoint(name="x_total", value=-1, kind="counter", ts=T0)
    with pytest.raises(ValidationError, match="name"):
        MetricPoint(name="bad-name", value=1, ts=T0)
    with pytest.raises(ValidationError, match="labels"):
        MetricPoint(name="ok", value=1, labels={"bad-label": "x"}, ts=T0)

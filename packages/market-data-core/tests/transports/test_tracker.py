from datetime import timedelta

import pytest

from market_data_core import BackpressureLevel, ConfigurationError, FeedbackTracker
from market_data_core.testing import T0, FakeClock, make_feedback_event, make_rate_adjustment


@pytest.fixture
def tracker(fake_clock: FakeClock) -> FeedbackTracker:
    return FeedbackTracker(ttl=10, clock=fake_clock)


def test_unknown_until_heard_from(tracker: FeedbackTracker) -> None:
    assert tracker.level("store-1") is None
    assert tracker.is_stale("store-1")
    assert tracker.latest("store-1") is None
    assert tracker.age("store-1") is None
    assert tracker.worst_level() is None


def test_stale_sequence_numbers_are_dropped(tracker: FeedbackTracker) -> None:
    assert tracker.observe(make_feedback_event(seq=5, level=BackpressureLevel.HARD))
    assert not tracker.observe(make_feedback_event(seq=3, level=BackpressureLevel.OK))
    assert not tracker.observe(make_feedback_event(seq=5, level=BackpressureLevel.OK))
    assert tracker.level("store-1") is BackpressureLevel.HARD
    assert tracker.dropped_stale == 2
    assert tracker.accepted == 1


def test_heartbeat_with_same_seq_refreshes(tracker: FeedbackTracker, fake_clock: FakeClock) -> None:
    event = make_feedback_event(seq=5, level=BackpressureLevel.SOFT)
    tracker.observe(event)
    for step in range(1, 4):
        fake_clock.now += 8  # each gap under the 10 s ttl, the total well over it
        heartbeat = event.model_copy(update={"ts": T0 + timedelta(seconds=8 * step)})
        assert tracker.observe(heartbeat)
    assert tracker.level("store-1") is BackpressureLevel.SOFT


def test_silence_past_ttl_is_unknown(tracker: FeedbackTracker, fake_clock: FakeClock) -> None:
    tracker.observe(make_feedback_event(seq=1, level=BackpressureLevel.OK))
    fake_clock.now += 10
    assert tracker.level("store-1") is BackpressureLevel.OK
    fake_clock.now += 0.5
    assert tracker.level("store-1") is None
    assert tracker.latest("store-1") is not None  # what was last said is still readable
    assert tracker.age("store-1") == 10.5


def test_restarted_publisher_is_accepted(tracker: FeedbackTracker, fake_clock: FakeClock) -> None:
    tracker.observe(make_feedback_event(seq=900), publisher="a")
    assert tracker.observe(make_feedback_event(seq=1, level=BackpressureLevel.HARD), publisher="b")
    assert tracker.level("store-1") is BackpressureLevel.HARD
    # same publisher after the state went stale: accepted too
    fake_clock.now += 11
    assert tracker.observe(make_feedback_event(seq=0), publisher="b")


def test_coordinators_are_independent(tracker: FeedbackTracker) -> None:
    tracker.observe(make_feedback_event(coordinator_id="a", seq=9, level=BackpressureLevel.SOFT))
    assert tracker.observe(
        make_feedback_event(coordinator_id="b", seq=1, level=BackpressureLevel.HARD)
    )
    assert tracker.coordinators() == ["a", "b"]
    assert tracker.worst_level() is BackpressureLevel.HARD


def test_rate_adjustments_ordered_by_ts(tracker: FeedbackTracker) -> None:
    later = make_rate_adjustment(ts=T0 + timedelta(seconds=1), scale=0.0)
    assert tracker.observe(later)
    assert not tracker.observe(make_rate_adjustment(ts=T0, scale=1.0))
    assert tracker.latest_rate("synthetic") == later
    assert tracker.providers() == ["synthetic"]


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="ttl must be > 0"):
        FeedbackTracker(ttl=0)

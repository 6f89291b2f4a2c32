"""The feedback fan-out: every publisher gets every message; a failing one is logged and
never stops the others."""

import logging

import pytest

from market_data_core import FeedbackPublisher
from market_data_core.protocols import TelemetryMessage
from market_data_core.testing import make_feedback_event, make_rate_adjustment
from market_data_core.transports import FeedbackFanOut

pytestmark = pytest.mark.asyncio


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[TelemetryMessage] = []

    async def publish(self, message: TelemetryMessage) -> None:
        self.messages.append(message)


class _Broken:
    async def publish(self, message: TelemetryMessage) -> None:
        raise ConnectionError("down")


async def test_every_publisher_gets_every_message_in_order() -> None:
    first, second = _Recorder(), _Recorder()
    fanout = FeedbackFanOut([first, second])
    messages = [make_feedback_event(seq=1), make_rate_adjustment(), make_feedback_event(seq=2)]
    for message in messages:
        await fanout.publish(message)
    assert first.messages == messages
    assert second.messages == messages
    assert isinstance(fanout, FeedbackPublisher)


async def test_a_failing_publisher_is_logged_and_the_others_still_receive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, after = _Recorder(), _Recorder()
    fanout = FeedbackFanOut([before, _Broken(), after])
    message = make_feedback_event(seq=1)
    with caplog.at_level(logging.ERROR, logger="market_data_core.transports.fanout"):
        await fanout.publish(message)
    assert before.messages == [message]
    assert after.messages == [message]
    [record] = caplog.records
    assert record.getMessage() == "feedback publisher failed"
    assert record.__dict__["publisher"] == "_Broken"
    assert record.exc_info is not None


async def test_publishers_added_later_receive_too() -> None:
    publishers: list[FeedbackPublisher] = []
    fanout = FeedbackFanOut(publishers)
    late = _Recorder()
    publishers.append(late)
    message = make_rate_adjustment()
    await fanout.publish(message)
    assert late.messages == [message]

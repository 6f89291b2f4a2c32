"""Feedback transports: one wire format, an in-memory bus and (with the ``redis`` extra) Redis.

``market_data_core.transports.redis`` is imported explicitly by those who need it, so that
``import market_data_core`` never imports redis.
"""

from market_data_core.transports.fanout import FeedbackFanOut
from market_data_core.transports.memory import InMemoryFeedbackBus, Subscription
from market_data_core.transports.tracker import FeedbackTracker
from market_data_core.transports.wire import WireMessage, decode, encode

__all__ = [
    "FeedbackFanOut",
    "FeedbackTracker",
    "InMemoryFeedbackBus",
    "Subscription",
    "WireMessage",
    "decode",
    "encode",
]

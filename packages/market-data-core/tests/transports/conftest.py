"""Fixtures of the transport tests: publishers, subscribers and raw clients of a real
``redis-server`` (the plugin's ``redis_server``, shared and emptied per test; tests that stop
or freeze it take ``private_redis_server``), always closed, even when a test fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio
import redis.asyncio as aioredis

from market_data_core.testing.servers import RedisServer
from market_data_core.transports.redis import RedisFeedbackPublisher, RedisFeedbackSubscriber

PublisherFactory = Callable[..., Awaitable[RedisFeedbackPublisher]]
SubscriberFactory = Callable[..., Awaitable[RedisFeedbackSubscriber]]


@pytest_asyncio.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A raw client of ``redis_server``, to write entries the transport would never write."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def make_publisher(redis_server: RedisServer) -> AsyncIterator[PublisherFactory]:
    """``await make_publisher(**kwargs)``: a started ``RedisFeedbackPublisher.from_url`` on
    ``redis_server`` (or on ``url=``); no heartbeat unless ``heartbeat_interval`` is given."""
    opened: list[RedisFeedbackPublisher] = []

    async def make(url: str | None = None, **kwargs: Any) -> RedisFeedbackPublisher:
        kwargs.setdefault("heartbeat_interval", None)
        publisher = RedisFeedbackPublisher.from_url(url or redis_server.url, **kwargs)
        opened.append(publisher)
        await publisher.start()
        return publisher

    yield make
    for publisher in reversed(opened):
        await publisher.aclose()


@pytest_asyncio.fixture
async def make_subscriber(redis_server: RedisServer) -> AsyncIterator[SubscriberFactory]:
    """``await make_subscriber(**kwargs)``: a started ``RedisFeedbackSubscriber.from_url`` on
    ``redis_server`` (or on ``url=``)."""
    opened: list[RedisFeedbackSubscriber] = []

    async def make(url: str | None = None, **kwargs: Any) -> RedisFeedbackSubscriber:
        subscriber = RedisFeedbackSubscriber.from_url(url or redis_server.url, **kwargs)
        opened.append(subscriber)
        await subscriber.start()
        return subscriber

    yield make
    for subscriber in reversed(opened):
        await subscriber.aclose()

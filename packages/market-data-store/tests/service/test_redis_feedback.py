"""The store publishing its feedback on a real Redis: a pipeline-side subscriber sees the
coordinator's events; Redis going away makes /readyz degraded (200), never unhealthy."""

import asyncio
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from market_data_core import FeedbackEvent, HealthStatus
from market_data_core.testing.servers import RedisServer, scaled
from market_data_core.transports.redis import RedisFeedbackSubscriber
from market_data_store.service import create_app
from market_data_store.settings import StoreSettings

pytestmark = pytest.mark.redis


def _settings(tmp_path: Path, redis: RedisServer) -> StoreSettings:
    return StoreSettings(
        database_url=SecretStr(f"sqlite:///{tmp_path / 'store.db'}"),
        dead_letter_path=str(tmp_path / "dlq.ndjson"),
        redis_url=SecretStr(redis.url),
        coordinator_id="store-redis",
        heartbeat_interval=0.1,
        health_interval=0.05,
    )


def _readiness(client: TestClient) -> tuple[int, HealthStatus]:
    response = client.get("/readyz")
    return response.status_code, HealthStatus.model_validate(response.json())


def test_feedback_reaches_a_redis_subscriber(tmp_path: Path, redis_server: RedisServer) -> None:
    async def first_event() -> FeedbackEvent:
        async with RedisFeedbackSubscriber.from_url(redis_server.url, from_start=True) as sub:
            while True:
                message = await asyncio.wait_for(anext(aiter(sub)), scaled(10))
                if isinstance(message, FeedbackEvent):
                    return message

    with TestClient(create_app(_settings(tmp_path, redis_server))):
        event = asyncio.run(first_event())
    assert event.coordinator_id == "store-redis"
    assert event.level == "ok"
    assert event.capacity == _settings(tmp_path, redis_server).queue_capacity


def test_redis_down_is_degraded_not_unhealthy(
    tmp_path: Path, private_redis_server: RedisServer
) -> None:
    with TestClient(create_app(_settings(tmp_path, private_redis_server))) as client:
        code, status = _readiness(client)
        assert (code, status.state) == (200, "healthy")
        private_redis_server.stop()
        deadline = time.monotonic() + scaled(15)
        while status.state == "healthy":
            assert time.monotonic() < deadline, "readiness never noticed Redis was down"
            time.sleep(0.05)
            code, status = _readiness(client)
        assert (code, status.state) == (200, "degraded")
        transport = status.component("feedback_transport")
        assert transport is not None
        assert (transport.state, transport.required) == ("unhealthy", False)
        assert client.post("/v1/bars", json=[]).status_code == 202  # writes go on
        private_redis_server.start()
        while status.state != "healthy":
            assert time.monotonic() < deadline + 15, "readiness never recovered"
            time.sleep(0.05)
            code, status = _readiness(client)
        assert code == 200

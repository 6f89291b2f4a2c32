"""Feedback over a real Redis between processes: a store-like publisher in a child process,
a pipeline-like subscriber here. The child is killed with SIGKILL and restarted: its
sequence numbers start again and are still accepted (a new publisher instance)."""

import asyncio
import signal
import subprocess
import sys
import textwrap

import pytest

from market_data_core import BackpressureLevel, FeedbackEvent
from market_data_core.testing.servers import RedisServer
from market_data_core.transports.redis import RedisFeedbackSubscriber

PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from market_data_core import FeedbackEvent
    from market_data_core.transports.redis import RedisFeedbackPublisher

    async def main(url, levels):
        async with RedisFeedbackPublisher.from_url(url, heartbeat_interval=0.2) as pub:
            for seq, level in enumerate(levels.split(","), 1):
                size = {"ok": 10, "soft": 700, "hard": 950}[level]
                await pub.publish(FeedbackEvent(
                    coordinator_id="store-a", queue_size=size, capacity=1000,
                    level=level, ts=datetime.now(UTC), seq=seq))
            print("published", flush=True)
            await asyncio.sleep(3600)  # keep the heartbeat going until killed

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _start_publisher(url: str, levels: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, url, levels], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "published"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert child.stdout is not None
    child.stdout.close()


async def _next_event(subscriber: RedisFeedbackSubscriber) -> FeedbackEvent:
    while True:
        message = await asyncio.wait_for(anext(aiter(subscriber)), 10)
        if isinstance(message, FeedbackEvent):
            return message


@pytest.mark.asyncio
async def test_feedback_crosses_processes_and_survives_a_killed_publisher(
    redis_server: RedisServer,
) -> None:
    async with RedisFeedbackSubscriber.from_url(redis_server.url, ttl=2.0) as subscriber:
        child = _start_publisher(redis_server.url, "ok,soft,hard")
        try:
            seen = [await _next_event(subscriber) for _ in range(3)]
            assert [(e.seq, e.level) for e in seen] == [(1, "ok"), (2, "soft"), (3, "hard")]
            heartbeat = await _next_event(subscriber)  # same seq, newer ts
            assert (heartbeat.seq, heartbeat.ts > seen[-1].ts) == (3, True)
            assert subscriber.level("store-a") is BackpressureLevel.HARD
        finally:
            _kill(child)

        restarted = _start_publisher(redis_server.url, "ok")
        try:
            event = await _next_event(subscriber)
            assert (event.seq, event.level) == (1, BackpressureLevel.OK)
            assert subscriber.level("store-a") is BackpressureLevel.OK
        finally:
            _kill(restarted)
    assert subscriber.decode_errors == 0

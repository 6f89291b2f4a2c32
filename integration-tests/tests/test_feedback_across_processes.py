"""Feedback over a real Redis between processes: a store-like publisher in a child process,
a pipeline-like subscriber here. The child is killed with SIGKILL and restarted: its
sequence numbers start again and are still accepted (a new publisher instance)."""

import asyncio
import signal
import sys
import textwrap
import time
from collections.abc import Callable

import pytest

from market_data_core import BackpressureLevel, FeedbackEvent
from market_data_core.testing.servers import RedisServer, scaled
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


async def _start_publisher(url: str, levels: str) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PUBLISHER, url, levels, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), scaled(30))
        assert line.strip() == b"published", line
    except BaseException:
        await _kill(child)
        raise
    return child


async def _kill(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.send_signal(signal.SIGKILL)
    await asyncio.wait_for(child.wait(), scaled(10))


async def _next_event(subscriber: RedisFeedbackSubscriber) -> FeedbackEvent:
    while True:
        message = await asyncio.wait_for(anext(aiter(subscriber)), scaled(10))
        if isinstance(message, FeedbackEvent):
            return message


async def _events_until(
    subscriber: RedisFeedbackSubscriber, done: Callable[[FeedbackEvent], bool]
) -> list[FeedbackEvent]:
    """Accepted events up to and including the first that is ``done``. The publisher
    repeats its latest event every 0.2 s, so a slow reader may see an event more than
    once: how many times depends on the schedule, which events and in what order do not."""
    deadline = time.monotonic() + scaled(30)
    events: list[FeedbackEvent] = []
    while time.monotonic() < deadline:
        events.append(await _next_event(subscriber))
        if done(events[-1]):
            return events
    pytest.fail(f"no such event in {scaled(30):.0f} s; got {[(e.seq, e.level) for e in events]}")


def _distinct(events: list[FeedbackEvent]) -> list[tuple[int, str]]:
    return [(e.seq, e.level) for i, e in enumerate(events) if i == 0 or e.seq != events[i - 1].seq]


@pytest.mark.asyncio
async def test_feedback_crosses_processes_and_survives_a_killed_publisher(
    redis_server: RedisServer,
) -> None:
    async with RedisFeedbackSubscriber.from_url(redis_server.url, ttl=2.0) as subscriber:
        child = await _start_publisher(redis_server.url, "ok,soft,hard")
        try:
            seen = await _events_until(subscriber, lambda e: e.seq == 3)
            assert _distinct(seen) == [(1, "ok"), (2, "soft"), (3, "hard")]
            heartbeat = await _next_event(subscriber)  # same seq, newer ts
            assert (heartbeat.seq, heartbeat.ts > seen[-1].ts) == (3, True)
            assert subscriber.level("store-a") is BackpressureLevel.HARD
        finally:
            await _kill(child)

        restarted = await _start_publisher(redis_server.url, "ok")
        try:
            # the killed publisher's last heartbeats may still be in the stream, before
            # the new one's first event: they are its (3, hard), and then comes seq 1
            after = await _events_until(subscriber, lambda e: e.seq == 1)
            assert {(e.seq, e.level) for e in after[:-1]} <= {(3, BackpressureLevel.HARD)}
            assert after[-1].level is BackpressureLevel.OK
            assert subscriber.level("store-a") is BackpressureLevel.OK
        finally:
            await _kill(restarted)
    assert subscriber.decode_errors == 0

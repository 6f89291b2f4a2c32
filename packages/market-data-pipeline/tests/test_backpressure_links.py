"""Feedback links against real transports: the in-process bus of a real ``Store``, a real
redis-server and a real store service (uvicorn, SQLite) followed over SSE; and the whole
loop in one process: a slow store pauses a running graph, which resumes and loses nothing."""

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pytest
import structlog
import uvicorn
from pydantic import SecretStr

from market_data_core import (
    BackpressureLevel,
    ConfigurationError,
    FeedbackEvent,
    InMemoryFeedbackBus,
    RateAdjustment,
    Trade,
)
from market_data_core.testing import T0, make_trade
from market_data_core.testing.servers import RedisServer, free_port
from market_data_core.transports.redis import RedisFeedbackPublisher, RedisFeedbackSubscriber
from market_data_pipeline import records
from market_data_pipeline.backpressure import BackpressureController
from market_data_pipeline.backpressure.links import (
    BusFeedbackLink,
    RedisFeedbackLink,
    SseFeedbackLink,
    link_feedback,
)
from market_data_pipeline.components import NoParams, SinkComponent
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.runtime import GraphRuntime, RunState
from market_data_pipeline.testing import TestingProvider, eventually, registry_with_fakes
from market_data_store.backends.base import Record, WriteResult
from market_data_store.backends.sqlite import SqliteBackend
from market_data_store.service.app import create_app
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

OK, SOFT, HARD = BackpressureLevel.OK, BackpressureLevel.SOFT, BackpressureLevel.HARD
BOUND = 30  # seconds: only reached when the behaviour is broken


def fb(level: BackpressureLevel, seq: int, *, cid: str = "store-1") -> FeedbackEvent:
    size = {OK: 0, SOFT: 60, HARD: 100}[level]
    return FeedbackEvent(
        coordinator_id=cid,
        queue_size=size,
        capacity=100,
        level=level,
        ts=T0 + timedelta(seconds=seq),
        seq=seq,
        utilization=size / 100,
    )


def trades(count: int, *, start: int = 0) -> list[Trade]:
    return [
        make_trade(ts=T0 + timedelta(microseconds=i), price=100.0 + i % 50)
        for i in range(start, start + count)
    ]


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(BOUND):
        await eventually(predicate)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class GatedBackend(SqliteBackend):
    """The real SQLite backend; its writes wait while the gate is closed (fills the queue)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()

    async def write(self, records: Sequence[Record]) -> WriteResult:
        await self.gate.wait()
        return await super().write(records)


class StalledBackend(SqliteBackend):
    """The real SQLite backend, stalled (as by a lock) until ``resume()``: the store's queue
    fills whatever the speed of the machine."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open = asyncio.Event()

    def resume(self) -> None:
        self._open.set()

    async def write(self, records: Sequence[Record]) -> WriteResult:
        await self._open.wait()
        return await super().write(records)


def store_settings(tmp_path: Path, **overrides: Any) -> StoreSettings:
    fields: dict[str, Any] = {
        "database_url": SecretStr(f"sqlite:///{tmp_path / 'store.db'}"),
        "dead_letter_path": str(tmp_path / "dlq.ndjson"),
        "coordinator_id": "store-1",
        "queue_capacity": 10,
        "workers": 1,
        "batch_size": 2,
        "flush_interval": 0.005,
        "high_watermark": 0.8,
        "soft_watermark": 0.5,
        "low_watermark": 0.3,
        "heartbeat_interval": 0.2,
        "ack": "queued",
    }
    return StoreSettings(**(fields | overrides))


# -- the in-process bus ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_bus_link_drives_the_controller() -> None:
    bus = InMemoryFeedbackBus()
    rate = BackpressureController("synthetic")
    async with link_feedback(rate, bus=bus) as links:
        await bus.publish(fb(HARD, 1))
        await until(lambda: rate.paused)
        waiter = asyncio.create_task(rate.acquire(10))
        await settle()
        assert not waiter.done()
        await bus.publish(fb(OK, 2))
        async with asyncio.timeout(BOUND):
            await waiter
        assert rate.scale == 1.0
        assert links.received == 2
    assert bus.subscriptions == ()  # the link unsubscribed


@pytest.mark.asyncio
async def test_bus_link_starts_from_the_latest_known_state() -> None:
    bus = InMemoryFeedbackBus()
    await bus.publish(fb(HARD, 7))
    rate = BackpressureController("synthetic")
    async with BusFeedbackLink(bus, rate):
        await until(lambda: rate.paused)


@pytest.mark.asyncio
async def test_one_feed_drives_several_controllers_and_a_failing_one_is_isolated() -> None:
    class Broken:
        scale = 1.0

        async def on_feedback(self, event: FeedbackEvent) -> RateAdjustment | None:
            raise RuntimeError("bug in a controller")

        async def acquire(self, count: int = 1) -> None:
            return None

    bus = InMemoryFeedbackBus()
    first, second = BackpressureController("a"), BackpressureController("b")
    async with BusFeedbackLink(bus, [first, Broken(), second]) as link:
        await bus.publish(fb(SOFT, 1))
        await until(lambda: second.scale == 0.5)
        assert first.scale == 0.5
        assert link.errors == 1
        assert link.running  # the link goes on
        await bus.publish(fb(HARD, 2))
        await until(lambda: first.paused and second.paused)


def test_link_feedback_needs_a_feed_and_valid_urls() -> None:
    rate = BackpressureController("synthetic")
    with pytest.raises(ConfigurationError, match="needs a feed"):
        link_feedback(rate)
    with pytest.raises(ConfigurationError, match="at least one rate controller"):
        link_feedback([], bus=InMemoryFeedbackBus())
    with pytest.raises(ConfigurationError, match="http"):
        link_feedback(rate, sse_url="ftp://user:canary-pw@store:1")


# -- Redis -----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_link_follows_a_real_store_and_publishes_rates(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = store_settings(tmp_path, redis_url=SecretStr(redis_server.url))
    backend = GatedBackend(settings.database)
    store = Store(settings, backend=backend)
    orchestrator = RedisFeedbackSubscriber.from_url(redis_server.url, block_ms=100)
    async with (
        RedisFeedbackPublisher.from_url(redis_server.url, heartbeat_interval=None) as rates,
        orchestrator,
    ):
        rate = BackpressureController("synthetic", coordinator_id="store-1", publisher=rates)
        async with link_feedback(rate, redis_url=SecretStr(redis_server.url)) as links:
            await store.start(migrate=True)
            try:
                await until(lambda: rate.level is OK)
                filling = asyncio.create_task(store.submit(trades(12)))
                await until(lambda: rate.paused)
                waiter = asyncio.create_task(rate.acquire(5))
                await settle()
                assert not waiter.done()
                backend.gate.set()
                async with asyncio.timeout(BOUND):
                    await filling
                    await waiter
                    await store.flush()
                await until(lambda: rate.scale == 1.0)
            finally:
                await links.stop()
                await store.stop()
        assert rate.pauses == 1
        await until(lambda: getattr(orchestrator.latest_rate("synthetic"), "scale", 0) == 1.0)
    assert await backend_count(settings, "trades") == 12


async def backend_count(settings: StoreSettings, table: str) -> int:
    backend = SqliteBackend(settings.database)
    await backend.open()
    try:
        return await backend.count(table)
    finally:
        await backend.close()


@pytest.mark.redis
@pytest.mark.asyncio
async def test_redis_link_survives_a_restart_of_redis(private_redis_server: RedisServer) -> None:
    rate = BackpressureController("synthetic")
    async with (
        RedisFeedbackPublisher.from_url(private_redis_server.url, heartbeat_interval=None) as store,
        RedisFeedbackLink(private_redis_server.url, rate, block_ms=100) as link,
    ):
        await store.publish(fb(HARD, 1))
        await until(lambda: rate.paused)
        await asyncio.to_thread(private_redis_server.restart)
        assert rate.paused  # held while Redis is away
        await store.publish(fb(OK, 2))  # the publisher retries on a fresh connection
        await until(lambda: rate.scale == 1.0)
        assert link.running


@pytest.mark.asyncio
async def test_an_unreachable_redis_is_logged_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "canary-redis-pass"
    rate = BackpressureController("synthetic")
    url = SecretStr(f"redis://:{secret}@127.0.0.1:{free_port()}/0")
    with structlog.testing.capture_logs() as logs:
        async with link_feedback(rate, redis_url=url) as links:
            await settle()
            assert links.links[0].running
            assert rate.scale == 1.0
    assert secret not in caplog.text
    assert secret not in repr(logs)
    assert secret not in repr(links.links[0].__dict__)


# -- a store service over SSE ----------------------------------------------------------


class InProcessStoreService:
    """A real store service: uvicorn serving ``create_app`` on SQLite, in a thread with its
    own event loop; its backend's writes can be held at a gate (which the child process of
    ``market_data_store.testing.StoreService`` cannot offer, hence this in-process one)."""

    def __init__(self, settings: StoreSettings, port: int) -> None:
        self.backend = GatedBackend(settings.database)
        self.store = Store(settings, backend=self.backend)
        config = uvicorn.Config(
            create_app(settings, store=self.store),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{port}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="store-service", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + BOUND
        while not self.server.started:
            assert self.thread.is_alive(), "the store service failed to start"
            assert time.monotonic() < deadline, "the store service did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(BOUND)
        assert not self.thread.is_alive()

    async def call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the service's loop and wait for it here."""
        assert self.loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def open_gate(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.backend.gate.set)


@contextlib.asynccontextmanager
async def store_service(settings: StoreSettings, port: int) -> AsyncIterator[InProcessStoreService]:
    service = InProcessStoreService(settings, port)
    await asyncio.to_thread(service.start)
    try:
        yield service
    finally:
        service.open_gate()
        await asyncio.to_thread(service.stop)


async def pause_and_resume(
    service: InProcessStoreService, rate: BackpressureController, start: int
) -> None:
    """Fill the service's queue (hard: ``rate`` pauses), then let it drain (``rate`` resumes)."""
    pauses = rate.pauses
    filling = asyncio.ensure_future(service.call(service.store.submit(trades(12, start=start))))
    await until(lambda: rate.paused)
    waiter = asyncio.create_task(rate.acquire(5))
    await settle()
    assert not waiter.done()
    service.open_gate()
    async with asyncio.timeout(BOUND):
        await filling
        await waiter
    await until(lambda: rate.scale == 1.0)
    assert rate.pauses == pauses + 1


@pytest.mark.asyncio
async def test_sse_link_follows_a_store_service_and_reconnects_after_a_restart(
    tmp_path: Path,
) -> None:
    settings = store_settings(tmp_path)
    port = free_port()
    rate = BackpressureController("synthetic", coordinator_id="store-1")
    link = SseFeedbackLink(f"http://127.0.0.1:{port}", rate, max_backoff=0.2)
    async with link:
        async with store_service(settings, port) as service:
            await until(lambda: link.connected and rate.level is OK)
            await pause_and_resume(service, rate, start=0)
        await until(lambda: not link.connected)  # the service went away: the rate is held
        held = rate.scale
        await settle()
        assert rate.scale == held
        async with store_service(settings, port) as service:
            # a new process: its coordinator's seq starts again (newer ts), and is followed
            await until(lambda: link.connected and rate.scale == 1.0)
            await pause_and_resume(service, rate, start=100)
            assert await service.call(service.store.backend.count("trades")) == 24
    assert link.reader.connections == 2
    assert not link.running


# -- the loop, end to end in one process -----------------------------------------------


class SubmitToStore(SinkComponent[NoParams]):
    """A minimal sink: hands each batch to the in-process store's write coordinator."""

    Params = NoParams
    description: ClassVar[str] = "test: store.submit"

    async def write(self, batch: pa.Table) -> None:
        store = self.context.services.store
        assert store is not None
        await store.submit(records.to_models(batch))


@pytest.mark.asyncio
async def test_a_slow_store_pauses_the_graph_which_resumes_and_loses_nothing(
    tmp_path: Path,
) -> None:
    batches, size = 100, 20
    TestingProvider.feed("e2e", [trades(size, start=i * size) for i in range(batches)])
    registry = registry_with_fakes()
    registry.register("submit", SubmitToStore)
    graph = Graph.build(
        [node("src", "testing_provider", name="e2e"), node("sink", "submit")], ["src -> sink"]
    )
    settings = store_settings(tmp_path, queue_capacity=100, batch_size=20)
    backend = StalledBackend(settings.database)
    store = Store(settings, backend=backend)
    adjustments = InMemoryFeedbackBus()
    seen = adjustments.subscribe(name="test")
    rate = BackpressureController("e2e", publisher=adjustments)
    await store.start(migrate=True)
    try:
        async with link_feedback(rate, bus=store.bus):
            runtime = GraphRuntime(
                graph, registry=registry, rate=rate, services={"store": store}, channel_capacity=2
            )

            async def resume_once_paused() -> None:
                await until(lambda: rate.pauses > 0)  # the full queue paused the graph
                backend.resume()

            async with asyncio.timeout(120), asyncio.TaskGroup() as tasks:
                tasks.create_task(resume_once_paused())
                result = await runtime.run()
            await store.flush()
            stats = store.coordinator.stats()
        count = await store.backend.count("trades")
        stored = await store.query_trades("AAPL", T0, T0 + timedelta(seconds=1), limit=10_000)
    finally:
        await store.stop()
    seen.close()
    scales = [m.scale async for m in seen if isinstance(m, RateAdjustment)]
    assert result.state is RunState.COMPLETED
    assert result.written == batches * size
    assert rate.pauses > 0
    assert 0.0 in scales
    assert any(scale > 0 for scale in scales[scales.index(0.0) :])  # paused, then resumed
    assert (stats.dropped, stats.dead_lettered, stats.failed) == (0, 0, 0)
    assert count == batches * size
    assert sorted(t.ts for t in stored) == [t.ts for t in trades(batches * size)]

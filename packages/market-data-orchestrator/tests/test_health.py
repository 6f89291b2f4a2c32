"""The store health watcher: real store service, hysteresis, bad payloads, aggregation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from market_data_core import HealthComponent, HealthState
from market_data_core.testing import make_health_status
from market_data_core.testing.servers import scaled
from market_data_orchestrator.jobs import JobInfo, JobState
from market_data_orchestrator.watchers.store_health import (
    StoreHealthWatcher,
    aggregate,
    job_component,
)
from market_data_store.testing import StoreService

HEALTHY_BODY = make_health_status(HealthState.HEALTHY).model_dump(mode="json")
UNHEALTHY_BODY = make_health_status(HealthState.HEALTHY, HealthState.UNHEALTHY).model_dump(
    mode="json"
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreService]:
    service = StoreService(tmp_path)
    service.start()
    try:
        yield service
    finally:
        service.stop()


class Recorder:
    def __init__(self) -> None:
        self.unhealthy: list[str] = []
        self.healthy = 0

    async def on_unhealthy(self, reason: str) -> None:
        self.unhealthy.append(reason)

    def on_healthy(self) -> None:
        self.healthy += 1


def scripted(answers: list[str]) -> Callable[[], httpx.AsyncClient]:
    """A client whose /readyz answers follow ``answers`` ('ok' or 'bad'); /healthz is 200."""
    script = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if next(script) == "ok":
            return httpx.Response(200, json=HEALTHY_BODY)
        return httpx.Response(503, json=UNHEALTHY_BODY)

    return lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler))


def watcher_for(
    answers: list[str], recorder: Recorder, *, unhealthy_after: int = 3, healthy_after: int = 2
) -> StoreHealthWatcher:
    return StoreHealthWatcher(
        "http://store.test",
        unhealthy_after=unhealthy_after,
        healthy_after=healthy_after,
        on_unhealthy=recorder.on_unhealthy,
        on_healthy=recorder.on_healthy,
        client_factory=scripted(answers),
    )


@pytest.mark.asyncio
async def test_real_store_down_and_back(store: StoreService) -> None:
    recorder = Recorder()
    watcher = StoreHealthWatcher(
        store.url,
        timeout=scaled(10),  # each poll is asserted: a slow answer is not the store down
        unhealthy_after=3,
        healthy_after=2,
        on_unhealthy=recorder.on_unhealthy,
        on_healthy=recorder.on_healthy,
    )
    try:
        assert (await watcher.poll_once()).healthy
        assert watcher.verdict is None  # one result is not a verdict yet
        assert (await watcher.poll_once()).healthy
        assert watcher.verdict is HealthState.HEALTHY
        assert watcher.status is not None
        assert watcher.status.service == "market-data-store"
        assert watcher.component().state is watcher.status.state
        first_change = watcher.last_change_ts

        await asyncio.to_thread(store.stop)
        for _ in range(2):
            result = await watcher.poll_once()
            assert not result.healthy
            assert result.reason == "connection refused on /readyz"
            assert result.live is False
            assert watcher.verdict is HealthState.HEALTHY
        assert watcher.component().state is HealthState.DEGRADED
        await watcher.poll_once()
        assert watcher.verdict is HealthState.UNHEALTHY
        assert recorder.unhealthy == ["connection refused on /readyz"]
        assert watcher.reason == "connection refused on /readyz"
        assert watcher.component().state is HealthState.UNHEALTHY
        assert watcher.component().details["reason"] == "connection refused on /readyz"
        assert watcher.last_change_ts is not None
        assert first_change is not None
        assert watcher.last_change_ts > first_change
        await watcher.poll_once()
        assert len(recorder.unhealthy) == 1  # once per flip
        assert watcher.status is not None  # the last answer stays visible

        await asyncio.to_thread(store.start)  # the same port again
        assert (await watcher.poll_once()).healthy
        assert watcher.verdict is HealthState.UNHEALTHY
        assert recorder.healthy == 0
        assert (await watcher.poll_once()).healthy
        assert watcher.verdict is HealthState.HEALTHY
        assert watcher.reason is None
        assert recorder.healthy == 1
        await watcher.poll_once()
        assert recorder.healthy == 1
        assert recorder.unhealthy == ["connection refused on /readyz"]
        assert watcher.flips == 3
    finally:
        await watcher.aclose()


@pytest.mark.asyncio
async def test_flapping_never_flips_before_n_consecutive() -> None:
    recorder = Recorder()
    answers = ["ok", "ok"] + ["bad", "bad", "ok"] * 4 + ["bad"] * 3 + ["ok", "bad"] * 3
    answers += ["ok", "ok"]
    watcher = watcher_for(answers, recorder)
    verdicts = []
    for _ in answers:
        await watcher.poll_once()
        verdicts.append(watcher.verdict)
    await watcher.aclose()
    healthy, unhealthy = HealthState.HEALTHY, HealthState.UNHEALTHY
    assert verdicts == [None] + [healthy] * 15 + [unhealthy] * 8 + [healthy]
    assert len(recorder.unhealthy) == 1
    assert "components c1 unhealthy" in recorder.unhealthy[0]
    assert "HTTP 503" in recorder.unhealthy[0]
    assert recorder.healthy == 1
    assert watcher.polls == len(answers)


@pytest.mark.asyncio
async def test_unhealthy_from_the_start_fires_and_healthy_first_does_not() -> None:
    recorder = Recorder()
    watcher = watcher_for(["bad"] * 2, recorder, unhealthy_after=2)
    await watcher.poll_once()
    assert watcher.component().state is HealthState.DEGRADED  # unknown yet
    await watcher.poll_once()
    assert watcher.verdict is HealthState.UNHEALTHY
    assert len(recorder.unhealthy) == 1
    await watcher.aclose()

    recorder = Recorder()
    watcher = watcher_for(["ok"], recorder, healthy_after=1)
    await watcher.poll_once()
    assert watcher.verdict is HealthState.HEALTHY
    assert recorder.healthy == 0  # nothing was unhealthy, nothing to resume
    await watcher.aclose()


def _responding(response: Callable[[httpx.Request], httpx.Response]) -> StoreHealthWatcher:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        return response(request)

    return StoreHealthWatcher(
        "http://store.test",
        unhealthy_after=1,
        client_factory=lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def _connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("name resolution failed", request=request)


BAD_ANSWERS: list[tuple[str, Callable[[httpx.Request], httpx.Response], str]] = [
    ("non-json", lambda r: httpx.Response(200, text="<html>ok</html>"), "non-JSON body"),
    ("off-schema", lambda r: httpx.Response(200, json={"state": "fine"}), "off-schema"),
    (
        "bad-state",
        lambda r: httpx.Response(200, json={**HEALTHY_BODY, "state": "great"}),
        "off-schema HealthStatus on /readyz (HTTP 200): state",
    ),
    ("503", lambda r: httpx.Response(503, json=UNHEALTHY_BODY), "HTTP 503"),
    ("500", lambda r: httpx.Response(500, json={"detail": "boom"}), "unexpected HTTP 500"),
    (
        "200-but-unhealthy",
        lambda r: httpx.Response(200, json={**UNHEALTHY_BODY}),
        "store unhealthy (HTTP 200)",
    ),
    ("timeout", _timeout, "timeout after 2s on /readyz"),
    ("connect", _connect_error, "connection error on /readyz: name resolution failed"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("respond", "expected"), [(r, e) for _, r, e in BAD_ANSWERS], ids=[i for i, _, _ in BAD_ANSWERS]
)
async def test_bad_answers_count_unhealthy_with_a_reason(
    respond: Callable[[httpx.Request], httpx.Response], expected: str
) -> None:
    watcher = _responding(respond)
    result = await watcher.poll_once()
    await watcher.aclose()
    assert not result.healthy
    assert result.reason is not None
    assert expected in result.reason
    assert result.live is True  # the process still answers /healthz
    assert watcher.verdict is HealthState.UNHEALTHY
    assert watcher.reason == result.reason


@pytest.mark.asyncio
async def test_degraded_store_is_usable_and_reported_degraded() -> None:
    body = make_health_status(HealthState.DEGRADED).model_dump(mode="json")
    watcher = _responding(lambda r: httpx.Response(200, json=body))
    watcher.healthy_after = 1
    assert (await watcher.poll_once()).healthy
    await watcher.aclose()
    assert watcher.verdict is HealthState.HEALTHY
    assert watcher.component().state is HealthState.DEGRADED


@pytest.mark.asyncio
async def test_background_polling_and_close() -> None:
    flipped = asyncio.Event()
    watcher = StoreHealthWatcher(
        "http://store.test",
        poll_interval=0.001,
        unhealthy_after=2,
        on_unhealthy=lambda reason: flipped.set(),
        client_factory=scripted(["bad"] * 1000),
    )
    async with watcher:
        async with asyncio.timeout(30):
            await flipped.wait()
    assert watcher.polls >= 2
    assert watcher._task is None


def _job(name: str, state: JobState) -> JobInfo:
    return JobInfo(name=name, config=f"{name}.yaml", state=state)


def test_job_components() -> None:
    expected = {
        JobState.FAILED: HealthState.UNHEALTHY,
        JobState.PAUSED: HealthState.DEGRADED,
        JobState.STARTING: HealthState.DEGRADED,
        JobState.RUNNING: HealthState.HEALTHY,
        JobState.PENDING: HealthState.HEALTHY,
        JobState.STOPPED: HealthState.HEALTHY,
        JobState.COMPLETED: HealthState.HEALTHY,
        JobState.STOPPING: HealthState.HEALTHY,
    }
    for state, health in expected.items():
        component = job_component(_job("bars-1m", state))
        assert component.name == "job:bars-1m"
        assert component.state is health
        assert component.required


def test_aggregate_is_worst_of() -> None:
    store = HealthComponent(name="store", state=HealthState.HEALTHY)
    feedback_down = HealthComponent(
        name="feedback_transport", state=HealthState.UNHEALTHY, required=False
    )
    running = [_job("a", JobState.RUNNING), _job("b", JobState.RUNNING)]

    status = aggregate("market-data-orchestrator", [store], running)
    assert status.state is HealthState.HEALTHY
    assert [c.name for c in status.components] == ["store", "job:a", "job:b"]
    assert status.version

    assert aggregate("orch", [store, feedback_down], running).state is HealthState.DEGRADED
    paused = [*running, _job("c", JobState.PAUSED)]
    assert aggregate("orch", [store], paused).state is HealthState.DEGRADED
    failed = [*running, _job("c", JobState.FAILED)]
    failed_status = aggregate("orch", [store, feedback_down], failed)
    assert failed_status.state is HealthState.UNHEALTHY
    assert failed_status.http_status == 503
    store_down = store.model_copy(update={"state": HealthState.UNHEALTHY})
    assert aggregate("orch", [store_down], running).state is HealthState.UNHEALTHY
    body = json.loads(failed_status.model_dump_json())
    assert body["state"] == "unhealthy"

"""The orchestrator's status page, end to end in a real browser (Debian's Chromium, driven
by Playwright): a store service (SQLite) publishing its feedback on a real Redis, an
orchestrator supervising a job that writes 1-minute bars through the store, and the page
at /ui/ signed in with each role's token.

What a user would notice: the page shows the running job; an operator's pause (by
keyboard) pauses it, resume resumes it and scale changes its replicas; the chart shows exactly the bars the store
holds; the page turns the store unhealthy live when the store dies (no reload) and healthy
when it is back; the backpressure level is drawn from the feedback stream; a viewer sees
no control buttons; the token never reaches the URL or the page; every control has a
label; every request stays on the orchestrator's origin (no CDN). Screenshots go to
``integration-tests/screenshots/`` (``MD_SCREENSHOTS`` elsewhere).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import write_yaml

from market_data_core.testing.servers import RedisServer, scaled
from market_data_orchestrator.testing import OrchestratorService
from market_data_orchestrator.ui import CSP
from market_data_store.testing import StoreService

pytestmark = pytest.mark.timeout(600)

SCREENSHOTS = Path(
    os.environ.get("MD_SCREENSHOTS", Path(__file__).resolve().parents[1] / "screenshots")
)
TOKENS = {
    "viewer": "viewer-token-of-the-status-page-test",
    "operator": "operator-token-of-the-status-page-test",
    "admin": "admin-token-of-the-status-page-test",
}
JOB = """\
name: bars
nodes:
  - {{id: trades, type: synthetic, params: {{symbols: [AAPL, MSFT], seed: 7, count: 2000000,
      batch_size: 500, rate: 2000, duration: 48h}}}}
  - {{id: m1, type: resample_ohlc, params: {{timeframe: 1m, source: page}}}}
  - {{id: store, type: store, params: {{url: "{url}"}}}}
edges: [trades -> m1, m1 -> store]
"""
CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",  # this machine's closed network refuses them
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "the status page tests need Chromium: apt-get install chromium (Debian's package;"
            " Playwright drives it, no browser download)"
        )
    return found


@dataclass
class Platform:
    store: StoreService
    orchestrator: OrchestratorService
    redis: RedisServer

    def api(self, path: str, role: str = "admin") -> Any:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        response = httpx.get(f"{self.orchestrator.url}{path}", headers=headers, timeout=10)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def job(self) -> dict[str, Any]:
        (job,) = self.api("/v1/jobs")
        return job


def _wait(predicate: Any, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + scaled(limit)
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("status-page")
    with RedisServer() as redis:
        store = StoreService(
            tmp,
            env={
                "MDS_REDIS_URL": redis.url,
                "MDS_HEALTH_INTERVAL": "0.2",
                "MDS_HEARTBEAT_INTERVAL": "0.5",
            },
        )
        with store:
            (tmp / "bars.yaml").write_text(JOB.format(url=store.url))
            deployment = {
                "jobs": [{"name": "bars", "config": "bars.yaml", "writes_to_store": True}],
                "store": {
                    "url": store.url,
                    "poll_interval": 0.2,
                    "timeout": 1.0,
                    "unhealthy_after": 2,
                    "healthy_after": 2,
                },
                "feedback": {"redis_url": redis.url},
                "security": {
                    "tokens": [
                        {"name": f"{role}-person", "role": role, "sha256": _digest(token)}
                        for role, token in TOKENS.items()
                    ]
                },
                "audit": {"path": str(tmp / "audit.jsonl")},
            }
            orchestrator = OrchestratorService(write_yaml(tmp / "deployment.yaml", deployment))
            orchestrator.start()
            try:
                running = Platform(store, orchestrator, redis)
                _wait(lambda: running.job()["state"] == "running", "the job to run", 120)
                _wait(
                    lambda: len(running.api("/v1/store/symbols")) == 2,
                    "bars of both symbols in the store",
                    120,
                )
                yield running
            finally:
                orchestrator.stop()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page_as(browser: Any, platform: Platform) -> Iterator[Any]:
    """``page_as(role)``: a fresh browser context on /ui/, signed in with that role's token
    by keyboard (type, Enter); requests to other origins are recorded."""
    contexts = []

    def open_page(role: str) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(scaled(20) * 1000)
        page.foreign = []  # type: ignore[attr-defined]
        origin = platform.orchestrator.url
        page.on(
            "request",
            lambda r: None if r.url.startswith(origin) else page.foreign.append(r.url),
        )
        page.goto(f"{origin}/")
        token = page.get_by_label("Access token")
        token.fill(TOKENS[role])
        token.press("Enter")
        page.get_by_text(f"{role}-person").wait_for()
        return page

    yield open_page
    for context in contexts:
        context.close()


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _job_state(page: Any) -> str:
    return str(page.locator('#jobs tr[data-job="bars"] .state').inner_text())


def test_the_page_is_served_offline_and_shows_the_running_job(
    page_as: Any, platform: Platform
) -> None:
    page = page_as("operator")
    row = page.locator('#jobs tr[data-job="bars"]')
    row.locator('.state[data-state="running"]').wait_for()
    assert "of 1 running" in row.inner_text()
    page.locator('#connection[data-state="live"]').wait_for()
    _shot(page, "01-operator-running")
    assert page.foreign == [], f"requests off the orchestrator's origin: {page.foreign}"
    answer = httpx.get(f"{platform.orchestrator.url}/ui/", timeout=10)
    assert answer.headers["content-security-policy"] == CSP
    assert TOKENS["operator"] not in page.url
    assert TOKENS["operator"] not in page.content()


def test_an_operator_pauses_and_resumes_the_job_by_keyboard(
    page_as: Any, platform: Platform
) -> None:
    page = page_as("operator")
    page.locator('#jobs tr[data-job="bars"] .state[data-state="running"]').wait_for()
    pause = page.get_by_role("button", name="Pause bars")
    pause.focus()
    page.keyboard.press("Enter")
    page.locator('#jobs tr[data-job="bars"] .state[data-state="paused"]').wait_for()
    assert platform.job()["state"] == "paused"
    assert "paused" in page.locator("#live").inner_text()
    _shot(page, "02-operator-paused")
    page.get_by_role("button", name="Resume bars").click()
    page.locator('#jobs tr[data-job="bars"] .state[data-state="running"]').wait_for()
    assert platform.job()["state"] == "running"


def test_an_operator_scales_the_job_from_the_page(page_as: Any, platform: Platform) -> None:
    page = page_as("operator")
    row = page.locator('#jobs tr[data-job="bars"]')
    row.locator('.state[data-state="running"]').wait_for()
    try:
        page.get_by_label("Replicas of bars").fill("2")
        page.get_by_role("button", name="Scale bars").click()
        row.get_by_text("2 of 2 running").wait_for()
        assert platform.job()["desired_replicas"] == 2
        _shot(page, "03-operator-scaled")
    finally:
        page.get_by_label("Replicas of bars").fill("1")
        page.get_by_role("button", name="Scale bars").click()
        row.get_by_text("1 of 1 running").wait_for()
    assert platform.job()["desired_replicas"] == 1


def _chart_and_store(page: Any, platform: Platform) -> tuple[list[tuple[str, str]], ...]:
    """The (start, close) of the candles drawn, of the orchestrator's newest bars and of
    the store's bars from the first of those on."""
    drawn = page.locator("#bars-chart g.candle").evaluate_all(  # one look at the chart
        "(nodes) => nodes.map((n) => [n.getAttribute('data-start'), n.getAttribute('data-close')])"
    )
    shown = [(start, close) for start, close in drawn]
    stored = platform.api("/v1/store/bars?symbol=MSFT&timeframe=1m&limit=120")
    direct = httpx.get(
        f"{platform.store.url}/v1/bars",
        params={
            "symbol": "MSFT",
            "timeframe": "1m",
            "start": stored[0]["start"],
            "end": "2100-01-01T00:00:00Z",
            "limit": 1000,
        },
        timeout=scaled(10),
    ).json()["items"]
    return (
        shown,
        [(b["start"], str(b["close"])) for b in stored],
        [(b["start"], str(b["close"])) for b in direct],
    )


def test_the_chart_shows_the_bars_the_store_holds(page_as: Any, platform: Platform) -> None:
    page = page_as("operator")
    page.get_by_role("button", name="Pause bars").click()  # hold the bars still
    page.locator('#jobs tr[data-job="bars"] .state[data-state="paused"]').wait_for()
    try:
        page.get_by_label("Symbol").select_option("MSFT")
        # A pause stops the provider; batches already on their way still drain into the
        # store. Ask again until the page, the orchestrator and the store agree.
        deadline = time.monotonic() + scaled(60)
        while True:
            page.get_by_role("button", name="Show bars").click()
            page.locator("#bars-summary", has_text="bars of MSFT from").wait_for()
            shown, stored, direct = _chart_and_store(page, platform)
            if shown == stored == direct or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert len(shown) >= 2
        assert shown == stored, "the page's bars are not the orchestrator's"
        assert direct == stored, "the page's bars are not the store's newest"
        title = page.locator("#bars-chart-title").text_content() or ""
        assert f"{len(shown)} 1m bars of MSFT" in title
        _shot(page, "04-bars-chart")
    finally:
        page.get_by_role("button", name="Resume bars").click()
        page.locator('#jobs tr[data-job="bars"] .state[data-state="running"]').wait_for()


def test_backpressure_is_drawn_from_the_feedback_stream(page_as: Any) -> None:
    page = page_as("viewer")
    page.locator('#bp-level[data-state="ok"]').wait_for()
    path = page.locator("#bp-chart path.level")
    path.wait_for(state="attached")  # a flat line at ok has no height: never "visible"
    first = int(path.get_attribute("data-points") or 0)
    _wait(
        lambda: int(page.locator("#bp-chart path.level").get_attribute("data-points") or 0) > first,
        "a new feedback report to be drawn (live)",
    )
    assert "ok now" in (page.locator("#bp-chart-title").text_content() or "")
    _shot(page, "05-backpressure")


def test_a_viewer_sees_no_control_buttons(page_as: Any) -> None:
    page = page_as("viewer")
    page.locator('#jobs tr[data-job="bars"] .state').wait_for()
    assert page.locator("#jobs button").count() == 0
    assert page.locator("#jobs input").count() == 0
    assert not page.locator("#jobs th.controls").is_visible()
    assert "admin" in page.locator("#audit-note").inner_text()
    _shot(page, "06-viewer")


def test_every_control_has_a_label(page_as: Any) -> None:
    page = page_as("admin")
    page.locator('#jobs tr[data-job="bars"] button').first.wait_for()
    unnamed = page.locator("input, select, button").evaluate_all(
        """(nodes) => nodes.filter((n) => n.offsetParent !== null)
            .filter((n) => !(n.labels && n.labels.length) && !n.getAttribute('aria-label')
                           && !n.textContent.trim())
            .map((n) => n.outerHTML)"""
    )
    assert unnamed == []


def test_an_admin_sees_the_audit_of_a_pause(page_as: Any) -> None:
    page = page_as("admin")
    row = page.locator('#jobs tr[data-job="bars"]')
    row.locator('.state[data-state="running"]').wait_for()
    page.get_by_role("button", name="Pause bars").click()
    row.locator('.state[data-state="paused"]').wait_for()
    page.get_by_role("button", name="Resume bars").click()
    row.locator('.state[data-state="running"]').wait_for()
    audit = page.locator("#audit")
    # live, no reload; earlier tests left an operator's resumes: this one is the admin's
    resumed = audit.locator("tbody tr", has_text="POST /v1/jobs/{name}/resume").filter(
        has_text="admin-person"
    )
    resumed.first.wait_for()
    assert "allowed" in resumed.first.inner_text()
    assert audit.locator("tbody tr", has_text="/pause").count() >= 1
    _shot(page, "07-admin-audit")


def test_the_page_turns_the_store_unhealthy_live_and_back(page_as: Any, platform: Platform) -> None:
    page = page_as("viewer")
    page.locator('#store-state[data-state="healthy"]').wait_for()
    page.locator("#bars-chart g.candle").first.wait_for()
    loads = []
    page.on("load", lambda _: loads.append(1))
    platform.store.kill()
    try:
        page.locator('#store-state[data-state="unhealthy"]').wait_for()
        page.locator('#jobs tr[data-job="bars"] .state[data-state="paused"]').wait_for()
        assert "store-health" in page.locator('#jobs tr[data-job="bars"]').inner_text()
        _shot(page, "08-store-unhealthy")
    finally:
        platform.store.start()
    page.locator('#store-state[data-state="healthy"]').wait_for()
    page.locator('#jobs tr[data-job="bars"] .state[data-state="running"]').wait_for()
    assert loads == [], "the page reloaded instead of updating live"
    _shot(page, "09-store-healthy-again")

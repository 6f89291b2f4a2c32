"""The orchestrator's status page, end to end in a real browser (Debian's Chromium, driven
by Playwright): a store service (SQLite) publishing its feedback on a real Redis, an
orchestrator supervising a job that writes 1-minute bars through the store, and the page
at /ui/ signed in with each role's token.

What a user would notice: the page shows the running job; an operator's pause (by
keyboard) pauses it ("1 replica, paused"), resume resumes it and scale changes its
replicas; the chart shows exactly the bars the store holds, its price labels with the
prices' two decimals; the page turns the store unhealthy live when the store dies (no
reload), its components unknown and no empty chart, and healthy when it is back; the
backpressure level is drawn from the feedback stream; a viewer sees no control buttons;
the token never reaches the URL or the page; every control has a label; every request
stays on the orchestrator's origin (no CDN); the icon is served; at a phone's 390 px the
page does not scroll sideways and every button fits, at 1280 px neither.

docs/quickstart.md's orchestrator (examples/service/deployment.yaml with a store service
without Redis, on free ports) shows the store's backpressure level on the page and in
`mdo status`, and its job, once completed, cannot be paused, resumed or scaled (the
buttons are disabled and say why). An orchestrator without a feedback transport says
why there is no level.

Screenshots go to ``integration-tests/screenshots/`` (``MD_SCREENSHOTS`` elsewhere; their
paths are printed, ``pytest -s`` shows them).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
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

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("MD_SCREENSHOTS", ROOT / "integration-tests" / "screenshots"))
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
EXAMPLE_TOKENS = {  # examples/service/deployment.yaml's (who, token)
    "viewer": ("dashboards", "viewer-example-token"),
    "operator": ("on-call", "operator-example-token"),
}
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
def signed_in(browser: Any) -> Iterator[Any]:
    """``signed_in(origin, token, who, viewport=None)``: a fresh browser context on /ui/,
    signed in with ``token`` by keyboard (type, Enter) once the page names ``who``;
    requests to other origins are recorded."""
    contexts = []

    def open_page(origin: str, token: str, who: str, viewport: Any = None) -> Any:
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(scaled(20) * 1000)
        page.foreign = []  # type: ignore[attr-defined]
        page.on(
            "request",
            lambda r: None if r.url.startswith(origin) else page.foreign.append(r.url),
        )
        page.goto(f"{origin}/")
        field = page.get_by_label("Access token")
        field.fill(token)
        field.press("Enter")
        page.locator("#who-name", has_text=who).wait_for()  # not an audit row of theirs
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page_as(signed_in: Any, platform: Platform) -> Any:
    """``page_as(role, viewport=None)``: the platform's page signed in as that role."""

    def open_page(role: str, viewport: Any = None) -> Any:
        origin = platform.orchestrator.url
        return signed_in(origin, TOKENS[role], f"{role}-person", viewport)

    return open_page


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")  # where to look (pytest -s)


def _fits(page: Any) -> dict[str, Any]:
    """What a sideways scroll would show: the document's widths and the visible buttons
    and fields that reach past the viewport's width."""
    return dict(
        page.evaluate(
            """() => {
                const root = document.documentElement;
                const width = root.clientWidth;
                const outside = [...document.querySelectorAll("button, input, select")]
                    .filter((n) => n.offsetParent !== null)
                    .map((n) => [n.getAttribute("aria-label") || n.textContent.trim() || n.id,
                                 n.getBoundingClientRect()])
                    .filter(([, box]) => box.left < 0 || box.right > width)
                    .map(([name, box]) => `${name}: ${box.left}..${box.right}`);
                return {scrollWidth: root.scrollWidth, clientWidth: width, outside};
            }"""
        )
    )


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
    try:
        assert platform.job()["state"] == "paused"
        assert "paused" in page.locator("#live").inner_text()
        replicas = page.locator('#jobs tr[data-job="bars"] td').nth(1)  # after the State cell
        assert replicas.inner_text() == "1 replica, paused"  # not "0 of 1 running"
        _shot(page, "02-operator-paused")
    finally:  # the next tests need it running
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


def _chart_and_store(page: Any, platform: Platform) -> tuple[list[tuple[str, float]], ...]:
    """The (start, close) of the candles drawn, of the orchestrator's newest bars and of
    the store's bars from the first of those on (closes as numbers: the page writes 253,
    Python 253.0)."""
    drawn = page.locator("#bars-chart g.candle").evaluate_all(  # one look at the chart
        "(nodes) => nodes.map((n) => [n.getAttribute('data-start'), n.getAttribute('data-close')])"
    )
    shown = [(start, float(close)) for start, close in drawn]
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
        [(b["start"], float(b["close"])) for b in stored],
        [(b["start"], float(b["close"])) for b in direct],
    )


def test_the_chart_shows_the_bars_the_store_holds(page_as: Any, platform: Platform) -> None:
    page = page_as("operator")
    # the job has written MSFT bars before they are held still (a busy machine's first
    # minutes of a fresh platform may have none yet)
    deadline = time.monotonic() + scaled(60)
    while len(platform.api("/v1/store/bars?symbol=MSFT&timeframe=1m&limit=120")) < 2:
        assert time.monotonic() < deadline, "the bars job wrote no two MSFT bars in time"
        time.sleep(0.5)
    page.get_by_role("button", name="Pause bars").click()  # hold the bars still
    page.locator('#jobs tr[data-job="bars"] .state[data-state="paused"]').wait_for()
    try:
        page.get_by_label("Symbol").select_option("MSFT")
        # A pause stops the provider; batches already on their way still drain into the
        # store. Ask again until the page, the orchestrator and the store agree.
        deadline = time.monotonic() + scaled(60)
        while True:
            page.get_by_role("button", name="Show bars").click()
            summary = page.locator("#bars-summary")
            try:
                summary.filter(has_text="bars of MSFT from").wait_for(timeout=scaled(20) * 1000)
            except Exception as exc:  # say what the page says instead
                text = summary.text_content()
                raise AssertionError(f"the page shows {text!r}, not MSFT's bars") from exc
            shown, stored, direct = _chart_and_store(page, platform)
            if shown == stored == direct or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert len(shown) >= 2
        assert shown == stored, "the page's bars are not the orchestrator's"
        assert direct == stored, "the page's bars are not the store's newest"
        title = page.locator("#bars-chart-title").text_content() or ""
        assert f"{len(shown)} 1m bars of MSFT" in title
        # the synthetic trades are priced in cents: the price axis says 187.25, not 187.250
        prices = platform.api("/v1/store/bars?symbol=MSFT&timeframe=1m&limit=120")
        decimals = {
            len(repr(float(b[k])).split(".")[1].rstrip("0"))
            for b in prices
            for k in ("open", "high", "low", "close")
        }
        assert max(decimals) == 2, decimals
        labels = page.locator('#bars-chart text.axis[x="2"]').all_text_contents()
        assert len(labels) >= 2, labels
        assert all(re.fullmatch(r"\d+\.\d{2}", label) for label in labels), labels
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
        chips = page.locator("#store-components .state")
        assert chips.count() >= 2
        # its health cannot be read: nobody knows its components' (not "healthy" as before)
        assert set(chips.all_inner_texts()) == {"unknown"}
        page.locator('#jobs tr[data-job="bars"] .state[data-state="paused"]').wait_for()
        assert "store-health" in page.locator('#jobs tr[data-job="bars"]').inner_text()
        _shot(page, "08-store-unhealthy")
        fresh = page_as("viewer")  # a page opened while the store is down: no empty chart
        fresh.locator('#store-state[data-state="unhealthy"]').wait_for()
        fresh.locator("#bars-summary", has_text="No data yet").wait_for()
        assert not fresh.locator("#bars-chart").is_visible()
        assert set(fresh.locator("#store-components .state").all_inner_texts()) == {"unknown"}
        _shot(fresh, "08b-opened-while-the-store-is-down")
    finally:
        platform.store.start()
    page.locator('#store-state[data-state="healthy"]').wait_for()
    page.locator('#jobs tr[data-job="bars"] .state[data-state="running"]').wait_for()
    assert loads == [], "the page reloaded instead of updating live"
    _shot(page, "09-store-healthy-again")


@pytest.mark.parametrize(("viewport", "name"), [(PHONE, "phone-390"), (DESKTOP, "desktop-1280")])
def test_the_page_fits_a_phone_and_a_desktop(
    page_as: Any, platform: Platform, viewport: dict[str, int], name: str
) -> None:
    """No sideways scroll at 390 px (the tables stack, the buttons wrap) nor at 1280 px,
    with everything an admin sees: the job's buttons, the chart, the audit."""
    page = page_as("admin", viewport)
    page.locator('#jobs tr[data-job="bars"] .state[data-state="running"]').wait_for()
    page.get_by_role("button", name="Scale bars").wait_for()
    page.locator("#bars-chart g.candle").first.wait_for()
    page.locator("#audit tbody tr").first.wait_for()
    fits = _fits(page)
    assert fits["scrollWidth"] <= fits["clientWidth"], fits
    assert fits["outside"] == [], fits
    _shot(page, f"10-{name}")


def test_the_icon_is_served(platform: Platform, page_as: Any) -> None:
    icon = httpx.get(f"{platform.orchestrator.url}/favicon.ico", timeout=scaled(10))
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    page = page_as("viewer")
    href = page.locator('link[rel="icon"]').get_attribute("href")
    linked = page.request.get(f"{platform.orchestrator.url}/ui/{href}")
    assert linked.status == 200
    assert linked.body() == icon.content


@dataclass
class Quickstart:
    store: StoreService
    orchestrator: OrchestratorService


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quickstart]:
    """docs/quickstart.md step 4 as written (examples/service/: `mds serve` without Redis,
    `mdo serve examples/service/deployment.yaml`), on free ports instead of 8080 and 8090,
    its job unpaced so that it completes in seconds."""
    tmp = tmp_path_factory.mktemp("quickstart")
    with StoreService(tmp) as store:
        for name in ("deployment.yaml", "quickstart.yaml"):
            text = (ROOT / "examples" / "service" / name).read_text(encoding="utf-8")
            text = text.replace("http://127.0.0.1:8080", store.url)
            text = text.replace('MDP_BASE_RATE: "5000"', 'MDP_BASE_RATE: "10000000"')
            assert "127.0.0.1:8080" not in text, name
            (tmp / name).write_text(text, encoding="utf-8")
        assert "10000000" in (tmp / "deployment.yaml").read_text(encoding="utf-8")
        with OrchestratorService(tmp / "deployment.yaml") as orchestrator:
            yield Quickstart(store, orchestrator)


def _example_page(signed_in: Any, quickstart: Quickstart, role: str, viewport: Any = None) -> Any:
    who, token = EXAMPLE_TOKENS[role]
    return signed_in(quickstart.orchestrator.url, token, who, viewport)


def test_the_quickstart_shows_the_stores_backpressure(
    signed_in: Any, quickstart: Quickstart
) -> None:
    """The example follows the store service's own feedback stream: a level, not
    "unknown, queue none heard yet", on the page and in `mdo status`."""
    page = _example_page(signed_in, quickstart, "viewer", PHONE)
    page.locator('#bp-level[data-state="ok"]').wait_for()
    assert page.locator("#bp-level").inner_text() == "ok"
    assert page.locator("#bp-detail").inner_text() == "queue 0 of 100000 (store)"
    page.locator("#bp-chart path.level").wait_for(state="attached")
    _shot(page, "11-quickstart-backpressure-phone")
    status = subprocess.run(  # what the quickstart's `uv run mdo status` prints
        [sys.executable, "-m", "market_data_orchestrator.cli", "status"],
        env={**os.environ, "MDO_URL": quickstart.orchestrator.url, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
    )
    row = next((line for line in status.stdout.splitlines() if "feedback_transport" in line), "")
    assert "healthy" in row, status.stdout + status.stderr
    assert '"transport": "sse"' in row
    assert '"worst_level": "ok"' in status.stdout


def test_a_completed_job_cannot_be_scaled_paused_or_resumed(
    signed_in: Any, quickstart: Quickstart
) -> None:
    page = _example_page(signed_in, quickstart, "operator", DESKTOP)
    row = page.locator('#jobs tr[data-job="quickstart"]')
    row.locator('.state[data-state="completed"]').wait_for(timeout=scaled(180) * 1000)
    assert "1 replica, completed" in row.inner_text()
    for name in ("Scale quickstart", "Pause quickstart", "Resume quickstart"):
        button = page.get_by_role("button", name=name)
        assert button.is_disabled(), name
        assert "quickstart is completed" in (button.get_attribute("title") or ""), name
    assert page.get_by_label("Replicas of quickstart").is_disabled()
    assert page.get_by_role("button", name="Scale quickstart").get_attribute("title") == (
        "quickstart is completed: it runs nothing to scale"
    )
    # the page opened before the job's first bars: it lists the symbols once there are some
    page.locator("#bars-chart g.candle").first.wait_for(timeout=scaled(60) * 1000)
    _shot(page, "12-quickstart-completed-desktop")


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorService]:
    """An orchestrator with tokens only: no job, no store, no feedback transport."""
    tmp = tmp_path_factory.mktemp("bare")
    deployment = {
        "security": {
            "tokens": [{"name": "viewer-person", "role": "viewer", "sha256": _digest("v-bare-1")}]
        },
        "audit": {"path": str(tmp / "audit.jsonl")},
    }
    with OrchestratorService(write_yaml(tmp / "deployment.yaml", deployment)) as orchestrator:
        yield orchestrator


def test_without_a_feedback_transport_the_page_says_why(
    signed_in: Any, bare: OrchestratorService
) -> None:
    page = signed_in(bare.url, "v-bare-1", "viewer-person", PHONE)
    page.locator("#bp-detail", has_text="no feedback transport configured").wait_for()
    assert page.locator("#bp-level").inner_text() == "unavailable"
    assert "add `feedback:` to the deployment" in page.locator("#bp-detail").inner_text()
    assert not page.locator("#bp-chart").is_visible()  # no empty frame
    page.locator("#bars-summary", has_text="No data yet").wait_for()
    assert not page.locator("#bars-chart").is_visible()
    fits = _fits(page)
    assert fits["scrollWidth"] <= fits["clientWidth"], fits
    _shot(page, "13-no-feedback-transport-phone")

"""The status page's files and read routes, without a browser (the page itself is tested in
Chromium by integration-tests/tests/test_status_page.py): the files are served from the
package with a CSP that allows this origin only and reference nothing elsewhere; /v1/me
names the token's owner and role; /v1/store, /v1/store/symbols and /v1/store/bars read the
store the orchestrator watches (a real ``mds serve`` here), refuse bad input with 4xx and
answer 404 when no store is watched, 503 when it is down; the live stream starts with the
store's view; the icon is served; /v1/feedback says why no feedback can be heard; a store
whose health cannot be read has unknown components."""

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from market_data_core import (
    SYMBOL_PATTERN,
    BackpressureLevel,
    FeedbackEvent,
    HealthComponent,
    HealthState,
    HealthStatus,
)
from market_data_core.testing import make_bar
from market_data_core.testing.servers import scaled
from market_data_orchestrator import ui
from market_data_orchestrator.deployment import load_deployment
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.security import hash_token
from market_data_orchestrator.service import create_app
from market_data_orchestrator.watchers.feedback import NO_TRANSPORT
from market_data_orchestrator.watchers.store_health import ProbeResult
from market_data_store.testing import StoreService

TOKENS = {"viewer": "v-token-ui-1a2b", "operator": "o-token-ui-3c4d"}


def _auth(role: str = "viewer") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def _deployment(tmp_path: Path, store_url: str | None) -> Path:
    tokens = "\n".join(
        f"    - {{name: {role}-user, role: {role}, sha256: {hash_token(token)}}}"
        for role, token in TOKENS.items()
    )
    store = (
        f"store: {{url: '{store_url}', poll_interval: 0.1, timeout: {scaled(5)}}}\n"
        if store_url
        else ""
    )
    path = tmp_path / "deployment.yaml"
    path.write_text(
        f"{store}security:\n  tokens:\n{tokens}\naudit: {{path: {tmp_path / 'audit.jsonl'}}}\n"
    )
    return path


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[TestClient]:
    orchestrator = Orchestrator(load_deployment(_deployment(tmp_path, None)))
    with TestClient(create_app(orchestrator)) as client:
        yield client


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreService]:
    with StoreService(tmp_path_factory.mktemp("store")) as service:
        bars = [
            make_bar(
                symbol=symbol,
                start=datetime(2026, 3, 2, 14, 30, tzinfo=UTC) + timedelta(minutes=i),
                open=100.0 + i,
                close=100.0 + i,
                high=100.0 + i,
                low=99.0 + i,
                vwap=100.0 + i,
            )
            for symbol in ("AAPL", "MSFT")
            for i in range(30)
        ]
        body = [bar.model_dump(mode="json") for bar in bars]
        answer = httpx.post(f"{service.url}/v1/bars", json=body, timeout=30)
        assert answer.status_code == 202, answer.text
        yield service


@pytest.fixture
def watching(tmp_path: Path, store: StoreService) -> Iterator[TestClient]:
    orchestrator = Orchestrator(load_deployment(_deployment(tmp_path, store.url)))
    with TestClient(create_app(orchestrator)) as client:
        yield client


def test_the_page_is_served_from_the_package_with_a_strict_csp(bare: TestClient) -> None:
    assert bare.get("/", follow_redirects=False).headers["location"] == "/ui/"
    page = bare.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == ui.CSP
    assert "default-src 'self'" in ui.CSP
    assert "script-src 'self'" in ui.CSP
    links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert sorted(links) == ["#main", "app.css", "app.js", "favicon.ico", "format.js"]
    for link in ("app.css", "app.js", "format.js"):
        answer = bare.get(f"/ui/{link}")
        assert answer.status_code == 200, link
        assert "://" not in re.sub(r"http://www\.w3\.org/2000/svg", "", answer.text), link
    assert "<script>" not in page.text  # nothing inline
    assert " style=" not in page.text


def test_every_form_control_of_the_page_has_a_label(bare: TestClient) -> None:
    html = bare.get("/ui/").text
    ids = re.findall(r"<(?:input|select)[^>]*\bid=\"([^\"]+)\"", html)
    assert ids
    for control in ids:
        assert f'for="{control}"' in html, f"no <label for={control}>"


def test_me_names_the_token_never_shows_it(bare: TestClient) -> None:
    answer = bare.get("/v1/me", headers=_auth("operator"))
    assert answer.json() == {"name": "operator-user", "role": "operator"}
    assert TOKENS["operator"] not in answer.text
    assert bare.get("/v1/me").status_code == 401


def test_without_a_store_the_store_routes_are_404(bare: TestClient) -> None:
    for path in ("/v1/store", "/v1/store/symbols", "/v1/store/bars?symbol=AAPL"):
        answer = bare.get(path, headers=_auth())
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_symbol_pattern_is_cores() -> None:
    assert ui._SYMBOL == SYMBOL_PATTERN


def test_the_latest_bars_of_a_symbol_come_from_the_store(watching: TestClient) -> None:
    symbols = watching.get("/v1/store/symbols?timeframe=1m", headers=_auth()).json()
    assert [s["symbol"] for s in symbols] == ["AAPL", "MSFT"]
    bars = watching.get("/v1/store/bars?symbol=MSFT&timeframe=1m&limit=10", headers=_auth())
    assert bars.status_code == 200
    closes = [b["close"] for b in bars.json()]
    assert closes == [120.0 + i for i in range(10)]  # the newest ten, oldest first
    assert {b["symbol"] for b in bars.json()} == {"MSFT"}
    assert watching.get("/v1/store/bars?symbol=NONE&timeframe=1m", headers=_auth()).json() == []


@pytest.mark.parametrize(
    "query",
    [
        "symbol=bad%20symbol",
        "symbol=AAPL&timeframe=7x",
        "symbol=AAPL&limit=0",
        "symbol=AAPL&limit=501",
    ],
)
def test_bad_queries_are_422_naming_the_parameter(watching: TestClient, query: str) -> None:
    answer = watching.get(f"/v1/store/bars?{query}", headers=_auth())
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_a_store_that_does_not_answer_is_503(tmp_path: Path) -> None:
    from market_data_core.testing.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    orchestrator = Orchestrator(load_deployment(_deployment(tmp_path, dead)))
    with TestClient(create_app(orchestrator)) as client:
        answer = client.get("/v1/store/bars?symbol=AAPL", headers=_auth())
        assert answer.status_code == 503
        assert "did not answer" in answer.json()["detail"]


def test_the_store_view_and_the_live_stream_start_with_it(watching: TestClient) -> None:
    deadline = time.monotonic() + scaled(30)
    while (view := watching.get("/v1/store", headers=_auth()).json())["verdict"] != "healthy":
        assert time.monotonic() < deadline, view
        time.sleep(0.1)
    assert view["state"] == "healthy"
    assert {c["name"] for c in view["components"]} >= {"database", "write_queue"}
    orchestrator = watching.app.state.orchestrator  # type: ignore[attr-defined]
    event = FeedbackEvent(
        coordinator_id="c1",
        queue_size=5,
        capacity=10,
        level=BackpressureLevel.SOFT,
        source="test",
        ts=datetime.now(UTC),
        seq=1,
    )
    orchestrator.status.feedback(event)
    with watching.stream("GET", "/v1/events", headers=_auth()) as stream:
        lines = (line for line in stream.iter_lines() if line)
        assert next(lines).startswith(": connected")
        assert next(lines) == "event: store"
        assert '"verdict": "healthy"' in next(lines)
        assert next(lines) == "event: feedback"  # the recent feedback, for a new page's chart
        assert '"level": "soft"' in next(lines)


def test_the_icon_is_served_where_browsers_look_for_it(bare: TestClient) -> None:
    icon = bare.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO with one image
    assert icon.content[22:30] == b"\x89PNG\r\n\x1a\n"  # (a PNG)
    linked = bare.get("/ui/favicon.ico")  # the page's <link rel="icon">
    assert linked.status_code == 200
    assert linked.content == icon.content


def test_without_a_feedback_transport_the_api_says_why(bare: TestClient) -> None:
    answer = bare.get("/v1/feedback", headers=_auth()).json()
    assert answer == {"transport": None, "connected": False, "reason": NO_TRANSPORT}
    assert NO_TRANSPORT.startswith("no feedback transport configured: add `feedback:`")


@pytest.mark.asyncio
async def test_a_store_whose_health_cannot_be_read_has_unknown_components(
    tmp_path: Path,
) -> None:
    """Not the last healthy state: the store is down, nobody knows its components'."""
    orchestrator = Orchestrator(load_deployment(_deployment(tmp_path, "http://127.0.0.1:9")))
    watcher = orchestrator.store
    assert watcher is not None
    healthy = HealthStatus.from_components(
        "market-data-store",
        [HealthComponent(name="database", state=HealthState.HEALTHY)],
        version="2.1.0",
    )
    await watcher.observe(ProbeResult(True, status=healthy, http_status=200))
    view = orchestrator.store_view()
    assert view is not None
    assert view["components"] == [{"name": "database", "state": "healthy", "required": True}]
    assert view["reported"] == "healthy"
    await watcher.observe(ProbeResult(False, "connection refused on /readyz"))
    view = orchestrator.store_view()
    assert view is not None
    assert view["components"] == [{"name": "database", "state": "unknown", "required": True}]
    assert view["reported"] is None
    assert view["reason"] == "connection refused on /readyz"
    sick = HealthStatus.from_components(  # a store that answers: its own word, fresh
        "market-data-store",
        [HealthComponent(name="database", state=HealthState.UNHEALTHY)],
        version="2.1.0",
    )
    await watcher.observe(ProbeResult(False, "unhealthy", status=sick, http_status=503))
    view = orchestrator.store_view()
    assert view is not None
    assert view["components"] == [{"name": "database", "state": "unhealthy", "required": True}]

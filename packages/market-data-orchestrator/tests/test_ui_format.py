"""The status page's pure parts (``ui/format.js``), run with Node: price ticks carry the
prices' own decimals, a job's replicas and throughput read as what the job does (a paused
job is "paused", not "0 of 1 running"), controls that cannot apply to a job's state are
disabled with the reason, and the backpressure panel says why it hears no level.

The page itself (these texts in Chromium) is tested by
integration-tests/tests/test_status_page.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib.resources import files
from typing import Any

import pytest

from market_data_core.testing.servers import scaled
from market_data_orchestrator.watchers.feedback import NO_TRANSPORT

FORMAT = files("market_data_orchestrator") / "ui" / "format.js"


def js(expression: str, **values: Any) -> Any:
    """``expression`` evaluated by Node with ``F`` the module and each of ``values`` a
    constant (as JSON); its value, back through JSON."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail(
            "the status page's unit tests run its JavaScript with Node: apt-get install nodejs"
        )
    constants = "".join(f"const {name} = {json.dumps(value)};\n" for name, value in values.items())
    script = (
        f"const F = require({json.dumps(str(FORMAT))});\n{constants}"
        f"process.stdout.write(JSON.stringify({expression}));\n"
    )
    done = subprocess.run(
        [node, "-e", script], capture_output=True, text=True, timeout=scaled(30), check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bar(open_: float, high: float, low: float, close: float) -> dict[str, float]:
    return {"open": open_, "high": high, "low": low, "close": close}


def job(state: str, replicas: list[str], desired: int | None = None, **more: Any) -> dict[str, Any]:
    return {
        "name": "quickstart",
        "state": state,
        "desired_replicas": len(replicas) if desired is None else desired,
        "replicas": [
            {"index": i, "state": s, "items_per_second": 2500.0} for i, s in enumerate(replicas)
        ],
        **more,
    }


@pytest.mark.parametrize(
    ("bars", "labels"),
    [
        # 2-decimal prices: 2 decimals (toPrecision(6) wrote 187.900), the middle rounded
        ([bar(187.25, 187.9, 186.5, 187.01)], ["187.90", "187.20", "186.50"]),
        (
            [bar(99.5, 101.25, 99.5, 101.0), bar(101.0, 101.1, 100.0, 100.05)],
            ["101.25", "100.38", "99.50"],
        ),
        ([bar(1.0842, 1.0851, 1.0839, 1.085)], ["1.0851", "1.0845", "1.0839"]),  # FX: 4
        ([bar(0.1 + 0.2, 0.4, 0.1, 0.2)], ["0.4", "0.3", "0.1"]),  # 0.30000000000000004
        ([bar(100, 120, 80, 110)], ["120", "100", "80"]),  # whole numbers: none
        ([bar(5.5, 5.5, 5.5, 5.5)], ["5.5"]),  # one price: one tick
    ],
)
def test_price_ticks_carry_the_prices_decimals(
    bars: list[dict[str, float]], labels: list[str]
) -> None:
    ticks = js("F.priceTicks(bars)", bars=bars)
    assert [t["label"] for t in ticks] == labels
    assert [float(t["label"]) for t in ticks] == [t["value"] for t in ticks]  # drawn where named


def test_two_decimal_prices_never_get_a_third() -> None:
    prices = [round(180 + i * 0.37 + (i % 7) * 0.01, 2) for i in range(120)]
    bars = [bar(p, p + 0.15, p - 0.12, p + 0.03) for p in prices]
    labels = [t["label"] for t in js("F.priceTicks(bars)", bars=bars)]
    assert len(labels) == 3
    assert all(re.fullmatch(r"\d+\.\d{2}", label) for label in labels), labels


@pytest.mark.parametrize(
    ("info", "text"),
    [
        (job("paused", ["paused"]), "1 replica, paused"),
        (job("paused", ["paused", "paused"]), "2 replicas, paused"),
        (job("running", ["running"]), "1 of 1 running"),
        (job("running", ["running", "starting"]), "1 of 2 running"),
        (job("starting", ["starting"]), "0 of 1 running"),
        (job("completed", ["completed"]), "1 replica, completed"),
        (job("failed", ["failed"]), "1 replica, failed"),
        (job("pending", [], desired=2), "2 replicas, pending"),
    ],
)
def test_the_replicas_read_as_what_the_job_does(info: dict[str, Any], text: str) -> None:
    assert js("F.replicaText(job)", job=info) == text


@pytest.mark.parametrize(
    ("info", "text"),
    [
        (job("running", ["running", "running"]), "5.0k records/s"),
        (job("paused", ["paused"]), "none (paused)"),
        (job("completed", ["completed"]), "none (completed)"),
    ],
)
def test_the_throughput_says_why_there_is_none(info: dict[str, Any], text: str) -> None:
    assert js("F.throughputText(job)", job=info) == text


@pytest.mark.parametrize(
    ("state", "enabled"),
    [
        ("running", {"pause": True, "resume": False, "scale": True}),
        ("paused", {"pause": False, "resume": True, "scale": True}),
        ("starting", {"pause": False, "resume": False, "scale": True}),
        ("pending", {"pause": False, "resume": False, "scale": True}),
        ("completed", {"pause": False, "resume": False, "scale": False}),
        ("failed", {"pause": False, "resume": False, "scale": False}),
        ("stopped", {"pause": False, "resume": False, "scale": False}),
        ("stopping", {"pause": False, "resume": False, "scale": False}),
    ],
)
def test_controls_apply_to_the_jobs_state_or_say_why_not(
    state: str, enabled: dict[str, bool]
) -> None:
    controls = js("F.controlStates(job)", job=job(state, [state]))
    assert {name: c["enabled"] for name, c in controls.items()} == enabled
    for name, control in controls.items():
        if control["enabled"]:
            assert control["reason"] is None
        else:
            assert "quickstart" in control["reason"], name
            assert state in control["reason"], name
    if state == "completed":
        assert controls["scale"]["reason"] == "quickstart is completed: it runs nothing to scale"


EVENT = {"coordinator_id": "store", "level": "soft", "queue_size": 800, "capacity": 1000}


@pytest.mark.parametrize(
    ("transport", "worst", "expected"),
    [
        (  # the quickstart before it was wired: no transport, so no level, and why
            {"transport": None, "connected": False, "reason": NO_TRANSPORT},
            None,
            {"level": "unavailable", "state": "unknown", "detail": NO_TRANSPORT},
        ),
        (
            {"transport": "sse", "connected": True, "reason": None},
            EVENT,
            {"level": "soft", "state": "soft", "detail": "queue 800 of 1000 (store)"},
        ),
        (
            {"transport": "sse", "connected": False, "reason": "feedback from x unreachable: E"},
            EVENT,
            {
                "level": "unavailable",
                "state": "unknown",
                "detail": "feedback from x unreachable: E; last heard: soft, queue 800 of 1000 (store)",
            },
        ),
        (  # the page has not asked the orchestrator yet
            None,
            None,
            {"level": "unknown", "state": "unknown", "detail": "waiting for the first report"},
        ),
    ],
)
def test_the_backpressure_panel_says_why_it_hears_no_level(
    transport: dict[str, Any] | None, worst: dict[str, Any] | None, expected: dict[str, str]
) -> None:
    assert js("F.backpressureText(transport, worst)", transport=transport, worst=worst) == expected

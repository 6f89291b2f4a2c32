"""What the pipeline puts on the wire (the bars it resamples and writes, the RateAdjustments
it publishes) validates against core's committed JSON Schemas, and the pipeline declares no
contract of its own: it uses core's models.

The schemas are those of ``$MD_CONTRACTS_DIR`` (default: the repository's docs/contracts),
so ``nox -s contracts`` runs this suite against the current schemas and against a previous
release's, with the pipeline installed from its wheel (without the store)."""

import asyncio
import json
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from market_data_core import BackpressureLevel, InMemoryFeedbackBus, RateAdjustment
from market_data_core.testing import T0, make_feedback_event, random_walk_trades
from market_data_core.testing.contracts import ContractSchemas, redeclared_contracts
from market_data_core.testing.servers import scaled
from market_data_pipeline import records
from market_data_pipeline.backpressure import BackpressureController
from market_data_pipeline.cli import app
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.operators.resample import ResampleOHLC, ResampleParams
from market_data_pipeline.runtime import GraphRuntime
from market_data_pipeline.testing import run_operator

SCHEMAS = ContractSchemas.from_env(Path(__file__).resolve().parents[4] / "docs" / "contracts")


def _errors(name: str, document: Any) -> list[str]:
    return SCHEMAS.errors(name, document)


@pytest.mark.asyncio
@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h"])
async def test_resampled_bars_conform_to_the_bar_schema(timeframe: str) -> None:
    trades = records.from_models(random_walk_trades("AAPL", 2_000, start=T0, seed=5))
    op = ResampleOHLC("bars", ResampleParams(timeframe=timeframe, source="contract-test"))
    out, _ = await run_operator(op, [trades])
    rows = out["out"].to_pylist()
    assert rows
    for row in rows:
        document = json.loads(json.dumps(row, default=lambda v: v.isoformat()))
        for optional in ("trade_count", "vwap"):
            if document[optional] is None:
                del document[optional]
        assert _errors("Bar", document) == []


@pytest.mark.asyncio
async def test_published_rate_adjustments_conform_to_the_schema() -> None:
    bus = InMemoryFeedbackBus()
    subscription = bus.subscribe(name="contract")
    controller = BackpressureController("contract-provider", publisher=bus)
    for seq, level in enumerate(
        [BackpressureLevel.HARD, BackpressureLevel.SOFT, BackpressureLevel.OK], 1
    ):
        await controller.on_feedback(
            make_feedback_event(level=level, seq=seq, ts=T0 + timedelta(seconds=seq))
        )
    adjustments: list[RateAdjustment] = []

    async def take() -> None:
        async for message in subscription:
            if isinstance(message, RateAdjustment):
                adjustments.append(message)
            if len(adjustments) == 3:
                return

    await asyncio.wait_for(take(), timeout=scaled(10))
    assert [a.scale for a in adjustments] == [0.0, 0.5, 1.0]
    for adjustment in adjustments:
        assert _errors("RateAdjustment", json.loads(adjustment.model_dump_json())) == []
    await controller.close()
    await bus.aclose()


@pytest.mark.asyncio
async def test_bars_written_by_a_pipeline_run_conform_to_the_bar_schema(tmp_path: Path) -> None:
    """A whole graph (synthetic trades, two resamplers, NDJSON file sinks): every line of
    the files it writes is a Bar as core's schema describes it."""
    graph = Graph.build(
        [
            node("trades", "synthetic", kind="trades", symbols=3, count=3_000, seed=7),
            node("bars_1m", "resample_ohlc", timeframe="1m", source="contract-test"),
            node("bars_5m", "resample_ohlc", timeframe="5m", source="contract-test"),
            node("out_1m", "file", path=str(tmp_path / "bars_1m.ndjson")),
            node("out_5m", "file", path=str(tmp_path / "bars_5m.ndjson")),
        ],
        ["trades -> bars_1m", "bars_1m -> bars_5m", "bars_1m -> out_1m", "bars_5m -> out_5m"],
    )
    await GraphRuntime(graph).run()
    for timeframe in ("1m", "5m"):
        lines = (tmp_path / f"bars_{timeframe}.ndjson").read_text().splitlines()
        assert lines
        for line in lines:
            document = json.loads(line)
            assert document["timeframe"] == timeframe
            assert _errors("Bar", document) == []


def test_the_pipeline_does_not_redeclare_core_contracts() -> None:
    """Its source (as installed) and every module of it imported by the tests above."""
    assert redeclared_contracts("market_data_pipeline") == []


def _requires(*names: str) -> None:
    missing = [n for n in names if n not in SCHEMAS.names]
    if missing:
        pytest.skip(f"{', '.join(missing)}: new in 1.2.0, release {SCHEMAS.version} predates it")


def test_every_line_of_the_control_protocol_conforms_to_the_job_event_schema(
    tmp_path: Path,
) -> None:
    """A real ``mdp run --control`` child, paused, resumed, sent a bad command and stopped:
    every line it writes is a ``JobEvent``, the last one a ``RunSummary``."""
    _requires("JobEvent", "RunSummary", "JobCommand")

    config = tmp_path / "paced.yaml"
    config.write_text(
        "name: paced\nnodes:\n"
        "  - {id: trades, type: synthetic, params: {symbols: 2, count: 100000, batch_size: 500,"
        " rate: 5000}}\n"
        "  - {id: bars, type: resample_ohlc, params: {timeframe: 1s}}\n"
        "  - {id: sink, type: 'null'}\n"
        "edges: [trades -> bars, bars -> sink]\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "market_data_pipeline.cli", "run", str(config), "--control"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert child.stdin is not None
    assert child.stdout is not None
    lines: list[str] = []
    try:
        commands = [{"action": "pause", "id": "p1"}, {"action": "resume", "id": "r1"}]
        for command in commands:
            assert _errors("JobCommand", command) == []
        lines.append(child.stdout.readline())  # started
        for command in commands:
            child.stdin.write(json.dumps(command) + "\n")
        child.stdin.write('{"action": "jump"}\n')
        child.stdin.flush()
        kinds: set[str] = set()
        while not {"control", "error", "progress"} <= kinds:
            lines.append(child.stdout.readline())
            kinds.add(json.loads(lines[-1])["event"])
        child.send_signal(signal.SIGTERM)
        lines += child.stdout.readlines()
        assert child.wait(scaled(30)) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdin.close()
        child.stdout.close()
    events = [json.loads(line) for line in lines if line.strip()]
    assert events[0]["event"] == "started"
    assert events[-1]["event"] == "summary"
    for event in events:
        assert _errors("JobEvent", event) == [], event
    assert _errors("RunSummary", events[-1]) == []
    assert events[-1]["nodes"]["trades"]["out"] > 0


def test_the_json_summary_conforms_to_the_run_summary_schema(tmp_path: Path) -> None:
    _requires("RunSummary")

    config = tmp_path / "small.yaml"
    config.write_text(
        "name: small\nnodes:\n"
        "  - {id: trades, type: synthetic, params: {symbols: 3, count: 2000}}\n"
        "  - {id: bars, type: resample_ohlc, params: {timeframe: 1m}}\n"
        "  - {id: sink, type: 'null'}\n"
        "edges: [trades -> bars, bars -> sink]\n"
    )
    result = CliRunner().invoke(app, ["run", str(config), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert _errors("RunSummary", summary) == []
    assert summary["state"] == "completed"
    assert summary["nodes"]["trades"]["out"] == 2000

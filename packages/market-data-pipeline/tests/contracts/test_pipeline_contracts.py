"""What the pipeline puts on the wire (the bars it writes, the RateAdjustments it publishes)
validates against core's committed JSON Schemas, and the pipeline declares no contract of
its own: it uses core's models."""

import ast
import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from market_data_core import BackpressureLevel, InMemoryFeedbackBus, RateAdjustment
from market_data_core.schemas import CONTRACTS
from market_data_core.testing import T0, make_feedback_event, random_walk_trades
from market_data_pipeline import records
from market_data_pipeline.backpressure import FeedbackRateController
from market_data_pipeline.operators.resample import ResampleOHLC, ResampleParams
from market_data_pipeline.testing import run_operator

ROOT = Path(__file__).resolve().parents[4]
SRC = ROOT / "packages" / "market-data-pipeline" / "src"


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((ROOT / "docs" / "contracts" / f"{name}.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(name: str, document: Any) -> list[str]:
    return [e.message for e in _validator(name).iter_errors(document)]


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
    controller = FeedbackRateController("contract-provider", publisher=bus)
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

    await asyncio.wait_for(take(), timeout=10)
    assert [a.scale for a in adjustments] == [0.0, 0.5, 1.0]
    for adjustment in adjustments:
        assert _errors("RateAdjustment", json.loads(adjustment.model_dump_json())) == []
    await controller.close()
    await bus.aclose()


def test_the_pipeline_does_not_redeclare_core_contracts() -> None:
    declared = {
        node.name
        for path in SRC.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    }
    assert declared & set(CONTRACTS) == set()

"""What the pipeline puts on the wire (the bars it resamples and writes, the RateAdjustments
it publishes) validates against core's committed JSON Schemas, and the pipeline declares no
contract of its own: it uses core's models.

The schemas are those of ``$MD_CONTRACTS_DIR`` (default: the repository's docs/contracts),
so ``nox -s contracts`` runs this suite against the current schemas and against a previous
release's, with the pipeline installed from its wheel (without the store)."""

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from market_data_core import BackpressureLevel, InMemoryFeedbackBus, RateAdjustment
from market_data_core.testing import T0, make_feedback_event, random_walk_trades
from market_data_core.testing.contracts import ContractSchemas, redeclared_contracts
from market_data_pipeline import records
from market_data_pipeline.backpressure import FeedbackRateController
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

"""UnifiedRuntime: either mode, the in-process store, control, health, idempotent reruns."""

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from pydantic import SecretStr

from market_data_core import BackpressureLevel, ControlAction, ControlStatus, HealthState
from market_data_core.testing import make_feedback_event, make_trade
from market_data_core.testing.servers import scaled
from market_data_pipeline import records
from market_data_pipeline.graph import Graph, LinearSpec, Mode, node
from market_data_pipeline.job import RuntimeState, UnifiedRuntime
from market_data_pipeline.runtime import RunState
from market_data_pipeline.settings import UnifiedRuntimeSettings
from market_data_pipeline.testing import (
    TestingProvider,
    collect,
    eventually,
    registry_with_fakes,
)

ROOT = Path(__file__).resolve().parents[3]


def _settings(tmp_path: Path, **values: object) -> UnifiedRuntimeSettings:
    return UnifiedRuntimeSettings.load(
        None, database_url=SecretStr(f"sqlite:///{tmp_path / 'md.db'}"), **values
    )


def _quickstart(symbols: int = 3) -> dict:
    return {
        "name": "qs",
        "nodes": [
            {
                "id": "trades",
                "type": "synthetic",
                "params": {
                    "kind": "trades",
                    "symbols": symbols,
                    "seed": 3,
                    "start": "2024-01-02T14:30:00Z",
                    "duration": "30m",
                    "events_per_second": 1,
                },
            },
            {"id": "m1", "type": "resample_ohlc", "params": {"timeframe": "1m"}},
            {"id": "m5", "type": "resample_ohlc", "params": {"timeframe": "5m"}},
            {"id": "store", "type": "store"},
        ],
        "edges": ["trades -> m1", "m1 -> m5", "m1 -> store", "m5 -> store"],
    }


@pytest.mark.asyncio
async def test_quickstart_graph_writes_bars_and_a_second_run_changes_nothing(
    tmp_path: Path,
) -> None:
    async with UnifiedRuntime(_settings(tmp_path)) as rt:
        first = await rt.run(_quickstart())
        assert rt.mode is Mode.DAG
        assert rt.state is RuntimeState.COMPLETED
        bars_before, bars_after = rt.store_report["tables"]["bars"]
        assert bars_before == 0
        # 3 symbols x 30 one-minute bars + 3 x 6 five-minute bars, each written once
        assert bars_after == 3 * 30 + 3 * 6
        assert first.nodes["store"].items_in == bars_after
    async with UnifiedRuntime(_settings(tmp_path)) as rt:
        await rt.run(_quickstart())
        assert rt.store_report["tables"]["bars"] == (bars_after, bars_after)


@pytest.mark.asyncio
async def test_classic_mode_runs_the_same_steps() -> None:
    TestingProvider.feed("classic", [[make_trade(price=float(i)) for i in range(1, 6)]])
    spec = LinearSpec.model_validate(
        {
            "source": {"type": "testing_provider", "params": {"name": "classic"}},
            "operators": [{"type": "merge"}],
            "sink": {"type": "collect", "params": {"name": "classic_out"}},
        }
    )
    async with UnifiedRuntime(registry=registry_with_fakes()) as rt:
        result = await rt.run(spec)
        assert rt.mode is Mode.CLASSIC
    table = collect("classic_out")
    assert table is not None
    assert table.num_rows == 5
    assert result.nodes["op1"].items_in == 5


@pytest.mark.asyncio
async def test_pause_holds_the_providers_and_resume_continues_where_they_were() -> None:
    TestingProvider.feed("ctl", [[make_trade(price=float(i))] for i in range(1, 201)])
    graph = Graph.build(
        [node("src", "testing_provider", name="ctl", delay=0.001), node("out", "collect")],
        ["src -> out"],
        name="ctl",
    )
    async with UnifiedRuntime(registry=registry_with_fakes()) as rt:
        task = asyncio.create_task(rt.run(graph))
        async with asyncio.timeout(30):
            await eventually(
                lambda: rt.current is not None and rt.current.stats["out"].items_in > 5
            )
        paused = await rt.control(ControlAction.PAUSE)
        assert paused.status is ControlStatus.ACCEPTED
        assert rt.state is RuntimeState.PAUSED
        assert rt.health().state is HealthState.DEGRADED
        await asyncio.sleep(0.05)  # let in-flight batches land
        assert rt.current is not None
        held = rt.current.stats["src"].items_out
        await asyncio.sleep(0.1)
        assert rt.current.stats["src"].items_out == held  # nothing emitted while paused
        assert (await rt.control(ControlAction.RESUME)).ok
        result = await asyncio.wait_for(task, timeout=scaled(30))
    table = collect("out")
    assert table is not None
    assert table.column("price").to_pylist() == [float(i) for i in range(1, 201)]
    assert result.nodes["src"].items_out == 200


@pytest.mark.asyncio
async def test_hard_backpressure_from_a_sinks_own_database_pauses_the_job(
    tmp_path: Path,
) -> None:
    """A ``store`` sink naming its own database gets its store from the job's services,
    wired to the job's controller: that store's hard feedback pauses the providers, its
    ok resumes them, and nothing is lost."""
    TestingProvider.feed("own", [[make_trade(price=float(i), ordinal=i)] for i in range(1, 201)])
    own = tmp_path / "own.db"
    graph = Graph.build(
        [
            node("src", "testing_provider", name="own", delay=0.001),
            node("db", "store", database=f"sqlite:///{own}"),
        ],
        ["src -> db"],
        name="own",
    )
    async with UnifiedRuntime(_settings(tmp_path), registry=registry_with_fakes()) as rt:
        task = asyncio.create_task(rt.run(graph))
        async with asyncio.timeout(30):
            await eventually(lambda: rt.current is not None and rt.current.stats["db"].items_in > 5)
        assert rt.current is not None
        assert rt.controller is not None
        sink = rt.current.components["db"]
        assert sink.store is not None  # type: ignore[attr-defined]
        bus = sink.store.bus  # type: ignore[attr-defined]
        await bus.publish(make_feedback_event(level=BackpressureLevel.HARD, seq=10**6))
        async with asyncio.timeout(30):
            await eventually(lambda: rt.controller is not None and rt.controller.paused)
        assert rt.pauses == 1
        await asyncio.sleep(0.05)  # let in-flight batches land
        held = rt.current.stats["src"].items_out
        await asyncio.sleep(0.1)
        assert rt.current.stats["src"].items_out == held < 200  # nothing emitted while paused
        await bus.publish(make_feedback_event(level=BackpressureLevel.OK, seq=10**6 + 1))
        result = await asyncio.wait_for(task, timeout=scaled(30))
    assert result.nodes["db"].items_in == 200
    assert not (tmp_path / "md.db").exists()  # the job's own database was never opened
    with sqlite3.connect(own) as db:
        assert db.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == 200


@pytest.mark.asyncio
async def test_reload_reruns_the_job_from_its_config_file(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text(
        "name: rl\nnodes:\n  - {id: src, type: testing_provider, params: {name: rl, delay: 0.01}}\n"
        "  - {id: out, type: collect, params: {name: rl_out}}\nedges: [src -> out]\n"
    )
    TestingProvider.feed("rl", [[make_trade(price=float(i))] for i in range(1, 101)])
    async with UnifiedRuntime(registry=registry_with_fakes()) as rt:
        task = asyncio.create_task(rt.run(config))
        async with asyncio.timeout(30):
            await eventually(
                lambda: rt.current is not None and rt.current.stats["out"].items_in > 2
            )
        config.write_text(config.read_text().replace("delay: 0.01", "delay: 0"))
        assert (await rt.control(ControlAction.RELOAD)).ok
        result = await asyncio.wait_for(task, timeout=scaled(30))
    assert rt.graph is not None
    assert rt.graph.node("src").params["delay"] == 0
    assert result.nodes["src"].items_out == 100  # the second run replayed everything


@pytest.mark.asyncio
async def test_control_without_a_job_is_rejected() -> None:
    async with UnifiedRuntime() as rt:
        answer = await rt.control(ControlAction.PAUSE)
    assert answer.status is ControlStatus.REJECTED


@pytest.mark.asyncio
async def test_required_mode_is_enforced() -> None:
    from market_data_pipeline.exceptions import GraphError

    async with UnifiedRuntime(UnifiedRuntimeSettings.load(None, mode="classic")) as rt:
        with pytest.raises(GraphError, match="dag pipeline but mode classic"):
            await rt.run(_quickstart())


@pytest.mark.asyncio
async def test_failures_surface_and_mark_the_runtime_unhealthy(tmp_path: Path) -> None:
    from market_data_pipeline.exceptions import NodeError

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,price,quantity\n2024-01-02T14:30:00+00:00,1.0,1\nnot-a-time,2,2\n")
    config = {
        "nodes": [
            {
                "id": "r",
                "type": "replay",
                "params": {"path": str(bad), "kind": "trades", "symbol": "X"},
            },
            {"id": "out", "type": "null"},
        ],
        "edges": ["r -> out"],
    }
    async with UnifiedRuntime() as rt:
        with pytest.raises(NodeError, match=r"bad\.csv"):
            await rt.run(config)
        assert rt.state is RuntimeState.FAILED
        assert rt.health().state is HealthState.UNHEALTHY


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("host_port", "reason"),
    [("127.0.0.1:{port}", "Connect call failed"), ("127.0.0.1:no-port", "invalid database URL")],
    ids=["unreachable", "unparsable"],
)
async def test_a_store_database_that_cannot_be_opened_is_a_pipeline_error_without_the_password(
    host_port: str, reason: str
) -> None:
    """``mdp run`` then prints a clear error (a PipelineError), not a traceback."""
    from market_data_core.testing.servers import free_port
    from market_data_pipeline.exceptions import PipelineError

    password = "pipeline-db-pa55word-7c1e"
    dsn = f"postgresql://md:{password}@{host_port.format(port=free_port())}/md"
    settings = UnifiedRuntimeSettings.load(None, database_url=SecretStr(dsn))
    async with UnifiedRuntime(settings) as rt:
        with pytest.raises(PipelineError, match=reason) as excinfo:
            await rt.run(_quickstart(symbols=1))
    assert password not in str(excinfo.value)
    assert excinfo.value.__cause__ is None


def test_records_round_trip_through_models() -> None:
    trades = [make_trade(price=1.5, trade_id="a"), make_trade(price=2.5, side="buy")]
    assert records.to_models(records.from_models(trades)) == trades


def _throttled(name: str, rows: int) -> Graph:
    """A stream held to one row a second: its drain could take hours."""
    TestingProvider.feed(name, [[make_trade(price=float(i))] * 10 for i in range(1, rows + 1)])
    return Graph.build(
        [
            node("src", "testing_provider", name=name),
            node("slow", "throttle", rate=1.0),
            node("out", "collect"),
        ],
        ["src -> slow", "slow -> out"],
        name=name,
    )


@pytest.mark.asyncio
async def test_a_stop_that_cannot_drain_in_its_timeout_abandons_the_rest_and_names_it() -> None:
    settings = UnifiedRuntimeSettings.load(None, drain_timeout=0.5, channel_capacity=4)
    async with UnifiedRuntime(settings, registry=registry_with_fakes()) as rt:
        task = asyncio.create_task(rt.run(_throttled("hours", 100)))
        async with asyncio.timeout(30):
            await eventually(
                lambda: rt.current is not None and rt.current.stats["out"].items_in > 0
            )
        await rt.stop(drain=True)
        result = await asyncio.wait_for(task, timeout=scaled(30))  # not the hours of the drain
    assert result.state is RunState.STOPPED
    drain = rt.drain
    assert (drain["timeout"], drain["complete"]) == (0.5, False)
    queued = drain["not_flushed"]["channels"]
    assert queued["slow"] >= 10  # at least a batch was waiting in front of the throttle
    assert "slow" in drain["not_flushed"]["cancelled"]
    delivered = result.nodes["out"].items_in
    emitted = result.nodes["src"].items_out
    assert delivered + sum(queued.values()) >= emitted  # every row emitted is accounted for


@pytest.mark.asyncio
async def test_records_the_store_could_not_write_in_the_drain_are_dead_lettered_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds the SQLite database locked: the store's writes wait, the drain
    times out, and what the store accepted goes to its dead-letter file."""
    dead_letters = tmp_path / "md.dlq.ndjson"
    monkeypatch.setenv("MDS_DEAD_LETTER_PATH", str(dead_letters))
    settings = _settings(tmp_path, drain_timeout=0.5)
    graph = {**_quickstart(symbols=3), "name": "locked"}
    graph["nodes"][0]["params"] |= {"duration": "10h", "batch_size": 500, "rate": 2000}
    async with UnifiedRuntime(settings) as rt:
        task = asyncio.create_task(rt.run(graph))
        async with asyncio.timeout(60):
            await eventually(
                lambda: rt.current is not None and rt.current.stats["store"].items_in > 0
            )
        lock = sqlite3.connect(tmp_path / "md.db", isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            async with asyncio.timeout(60):  # bars written after the lock wait in the store
                await eventually(
                    lambda: (
                        rt.current is not None
                        and rt.current.stats["store"].counters.get("written", 0) > 0
                    )
                )
            await rt.stop(drain=True)
            result = await asyncio.wait_for(task, timeout=scaled(60))
        finally:
            lock.close()
    store = rt.drain["not_flushed"]["store"]
    assert store["dead_lettered"] > 0
    assert rt.drain["not_flushed"]["dead_letter_path"] == str(dead_letters)
    kept = sum(len(json.loads(line)["records"]) for line in dead_letters.read_text().splitlines())
    assert kept == store["dead_lettered"]
    assert result.state is RunState.STOPPED


@pytest.mark.asyncio
async def test_the_metrics_endpoint_says_where_it_listens() -> None:
    import urllib.request

    from structlog.testing import capture_logs

    from market_data_core.testing.servers import free_port

    port = free_port()
    settings = UnifiedRuntimeSettings.load(None, metrics_port=port, metrics_host="127.0.0.1")
    with capture_logs() as logs:
        async with UnifiedRuntime(settings):
            url = f"http://127.0.0.1:{port}/metrics"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    assert b"# TYPE" in body
    assert {"event": "metrics listening", "url": url, "log_level": "info"} in logs

"""A worker that owns several partitions: ``mdp run CONFIG --partitions 0,3`` runs one copy
of the graph per partition, ``{partition}`` in its params replaced, each copy with its own
windows. Here on files (``trades-{partition}.parquet`` -> bars); the scale-out integration
test does the same on Redis streams."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from market_data_pipeline.cli import app
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.settings import UnifiedRuntimeSettings

runner = CliRunner()


def _graph(**sink: object) -> Graph:
    return Graph.build(
        [
            node("tape", "replay", path="in/trades-{partition}.parquet", batch_size=100),
            node("m1", "resample_ohlc", timeframe="1m", source="part"),
            node("out", "file", path="out/bars-{partition}.parquet", **sink),
        ],
        ["tape -> m1", "m1 -> out"],
        name="bars",
    )


def test_each_partition_gets_its_own_copy_with_the_placeholder_replaced() -> None:
    graph = _graph(tags=["{partition}", "x"]).for_partitions([3, 0])
    assert [n.id for n in graph.nodes] == [
        "tape-p0",
        "m1-p0",
        "out-p0",
        "tape-p3",
        "m1-p3",
        "out-p3",
    ]
    assert [str(e) for e in graph.edges] == [
        "tape-p0 -> m1-p0",
        "m1-p0 -> out-p0",
        "tape-p3 -> m1-p3",
        "m1-p3 -> out-p3",
    ]
    params = {n.id: n.params for n in graph.nodes}
    assert params["tape-p3"]["path"] == "in/trades-3.parquet"
    assert params["out-p0"]["tags"] == ["0", "x"]  # inside lists too
    assert params["m1-p3"] == {"timeframe": "1m", "source": "part"}
    assert not graph.partitioned
    assert _graph().partitioned


@pytest.mark.parametrize(
    ("partitions", "message"),
    [([], "no partitions"), ([1, 1], "distinct"), ([-1], ">= 0")],
)
def test_bad_partition_lists_are_refused(partitions: list[int], message: str) -> None:
    with pytest.raises(GraphError, match=message):
        _graph().for_partitions(partitions)


def test_a_graph_without_the_placeholder_cannot_be_partitioned() -> None:
    graph = Graph.build([node("a", "synthetic"), node("b", "null")], ["a -> b"])
    with pytest.raises(GraphError, match=r"no node param holds \{partition\}"):
        graph.for_partitions([0, 1])


def test_a_copy_id_too_long_names_the_node() -> None:
    long_id = "n" * 63
    graph = Graph.build(
        [node(long_id, "replay", path="{partition}.csv"), node("b", "null")], [f"{long_id} -> b"]
    )
    with pytest.raises(GraphError, match="partition 12's copy") as caught:
        graph.for_partitions([12])
    assert caught.value.node_id == long_id


def test_partitions_come_from_the_environment_as_a_comma_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MDP_PARTITIONS", "0, 3")
    assert UnifiedRuntimeSettings().partitions == (0, 3)
    monkeypatch.setenv("MDP_PARTITIONS", "0,x")
    with pytest.raises(ValidationError, match="comma-separated numbers"):
        UnifiedRuntimeSettings()


def _trades(path: Path, seed: int, symbols: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 2_000
    start = pd.Timestamp("2026-03-02 14:30", tz="UTC")
    frame = pd.DataFrame(
        {
            "symbol": rng.choice(symbols, n),
            "ts": start + pd.to_timedelta(np.sort(rng.uniform(0, 1800, n)), unit="s"),
            "price": np.round(100 + rng.normal(0, 1, n).cumsum() * 0.01, 4),
            "size": rng.integers(1, 100, n).astype(float),
        }
    )
    frame["ts"] = frame["ts"].dt.floor("us")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return frame


def _pandas_bars(trades: pd.DataFrame) -> pd.DataFrame:
    bins = trades.set_index("ts").groupby("symbol")["price"].resample("1min")
    bars = pd.DataFrame(
        {"open": bins.first(), "high": bins.max(), "low": bins.min(), "close": bins.last()}
    )
    bars["trade_count"] = bins.count()
    bars = bars[bars["trade_count"] > 0].reset_index().rename(columns={"ts": "start"})
    return bars.sort_values(["symbol", "start"]).reset_index(drop=True)


def _stored(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    frame = frame.drop_duplicates(["symbol", "start"], keep="last")  # a bar's last revision
    columns = ["symbol", "start", "open", "high", "low", "close", "trade_count"]
    return frame[columns].sort_values(["symbol", "start"]).reset_index(drop=True)


def test_one_worker_for_two_partitions_makes_each_partitions_bars_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partition 1 lags partition 0 by half an hour of event time: in one shared window set
    its ticks would be late; in its own copy none is."""
    monkeypatch.chdir(tmp_path)
    first = _trades(tmp_path / "in/trades-0.parquet", 1, ["AAA", "BBB"])
    second = _trades(tmp_path / "in/trades-1.parquet", 2, ["CCC", "DDD"])
    second["ts"] -= pd.Timedelta(minutes=30)
    second.to_parquet(tmp_path / "in/trades-1.parquet", index=False)
    config = tmp_path / "bars.yaml"
    config.write_text(json.dumps(_graph().to_config()))

    done = runner.invoke(app, ["run", str(config), "--partitions", "0,1", "--json"])

    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["late"] == 0
    assert summary["nodes"]["tape-p0"]["out"] == summary["nodes"]["tape-p1"]["out"] == 2_000
    for partition, trades in ((0, first), (1, second)):
        got = _stored(tmp_path / f"out/bars-{partition}.parquet")
        want = _pandas_bars(trades)
        pd.testing.assert_frame_equal(got, want, check_dtype=False, check_index_type=False)


def test_mdp_run_refuses_a_partitioned_config_without_partitions_naming_the_node(
    tmp_path: Path,
) -> None:
    config = tmp_path / "bars.yaml"
    config.write_text(json.dumps(_graph().to_config()))
    done = runner.invoke(app, ["run", str(config)])
    assert done.exit_code == 2
    assert "node 'tape'" in done.output
    assert "--partitions" in done.output
    done = runner.invoke(app, ["run", str(config), "--partitions", "0,0"])
    assert done.exit_code == 2
    assert "distinct" in done.output

"""Benchmark of market-data-pipeline: 1M trades over 100 symbols -> 1m OHLCV bars.

The subject: ``replay`` (a Parquet file) -> ``resample_ohlc`` (1m) -> ``null`` sink. The
baselines, measured in the same run on the same file: a hand-written single Python loop
that reads the file and aggregates each trade into a dict of bars (``_loop.py``), and
polars' lazy group-by of the same bars (``_polars.py``, where polars is installed). All
read the file inside the timed section and make the same number of bars (checked).

Two sets of figures, quoted side by side:

- whole processes (what a user feels): ``mdp run`` of the job, the loop and polars, each a
  fresh process of the same interpreter ``MD_BENCH_PYTHON`` (the ``bench`` nox session's
  user environment: no pandas), timed from spawn to exit, with each child's own peak
  memory;
- in process: the DAG runtime run inside this process against the loop in this process
  (no start-up, imports warm after the first repetition);
- the floor: a process that only imports the libraries `mdp run` loads (``FLOOR``), against
  polars' whole process: the best ratio any run on those libraries could reach.

Each figure is the median of ``REPEAT`` repetitions, the first included, alternating, with
its spread (min-max): the loop's own rate swings with the machine's load, so a ratio of two
medians means more than either rate alone.

``MD_BENCH_PIPELINE_TRADES`` sets the number of trades (default 1,000,000);
``MD_BENCH_REPEAT`` the repetitions (default 5).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _loop import hand_written_loop
from _process import BENCH, PYTHON, Measured, compile_bytecode, run_process
from _report import Row, Sample, print_table

from market_data_pipeline import records
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.runtime import GraphRuntime

REPEAT = int(os.environ.get("MD_BENCH_REPEAT", "5"))
N_TRADES = int(os.environ.get("MD_BENCH_PIPELINE_TRADES", "1000000"))
N_SYMBOLS = 100


def write_trades(path: Path, n: int, symbols: int, seed: int = 1) -> None:
    """``n`` random-walk trades over ``symbols`` symbols in time order, as Parquet."""
    rng = np.random.default_rng(seed)
    start = 1_704_205_800_000_000_000  # 2024-01-02T14:30:00Z in nanoseconds
    ts = start + np.sort(rng.integers(0, 6 * 3600 * 1_000_000_000, n))
    sym = rng.integers(0, symbols, n)
    names = np.array([f"SYM{i:03d}" for i in range(symbols)])
    price = 100 + np.cumsum(rng.normal(0, 0.01, n))
    size = rng.integers(1, 500, n).astype(np.float64)
    table = pa.table(
        {
            "symbol": pa.array(names[sym]),
            "ts": pa.array(ts, type=records.TIMESTAMP),
            "price": pa.array(price),
            "size": pa.array(size),
        }
    )
    pq.write_table(table, path, row_group_size=65_536)


async def dag(path: Path) -> int:
    graph = Graph.build(
        [
            node("trades", "replay", path=str(path), kind="trades", batch_size=65_536),
            node("bars", "resample_ohlc", timeframe="1m", source="bench"),
            node("sink", "null"),
        ],
        ["trades -> bars", "bars -> sink"],
        name="bench",
    )
    result = await GraphRuntime(graph).run()
    return result.nodes["sink"].items_in


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


JOB = """name: bench
nodes:
  - {{id: trades, type: replay, params: {{path: '{path}', kind: trades, batch_size: 65536}}}}
  - {{id: bars, type: resample_ohlc, params: {{timeframe: 1m, source: bench}}}}
  - {{id: sink, type: "null"}}
edges: [trades -> bars, bars -> sink]
"""


def processes(path: Path, tmp: Path) -> list[Row]:
    """``mdp run`` of the job, the loop and polars as whole processes of ``PYTHON``."""
    env = {**os.environ, "MDP_LOG_LEVEL": "warning"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compile_bytecode(env)
    job = tmp / "bars.yaml"
    job.write_text(JOB.format(path=path))
    polars = _has(env, "polars")
    subjects = {
        "mdp": ["-m", "market_data_pipeline.cli", "run", "--json", str(job)],
        "loop": [str(BENCH / "_loop.py"), str(path)],
        **({"polars": [str(BENCH / "_polars.py"), str(path)]} if polars else {}),
        "floor": ["-c", FLOOR],
    }
    measured = {name: Measured() for name in subjects}
    counts: dict[str, set[int]] = {name: set() for name in subjects}
    for _ in range(REPEAT):
        for name, argv in subjects.items():
            run = run_process(argv, env, tmp)
            if name == "floor":
                measured[name].add(run, 0.0)
                continue
            if name == "mdp":
                summary = json.loads(run.stdout)
                count, inside = summary["nodes"]["sink"]["in"], float(summary["seconds"])
            else:
                text_count, text_seconds = run.stdout.split()
                count, inside = int(text_count), float(text_seconds)
            counts[name].add(count)
            measured[name].add(run, inside)
    if len({c for found in counts.values() for c in found}) != 1:
        sys.exit(f"not the same bars: {counts}")
    mdp = measured["mdp"]
    rows = [
        Row(
            "`mdp run` replay->resample_ohlc(1m)->null",
            N_TRADES,
            Sample(tuple(mdp.process)).median,
            f"{name} (a whole process)",
            Sample(tuple(measured[name].process)).median,
            "a whole `mdp run` process",
            what,
            f"mdp: {mdp.text()}; {name}: {measured[name].text()}",
            "trade",
        )
        for name, what in (
            ("loop", "a whole process of the hand-written loop"),
            ("polars", "a whole process of polars' lazy group-by"),
        )
        if name in measured
    ]
    if polars:
        floor = measured["floor"]
        rows.append(
            Row(
                "imports alone: the libraries `mdp run` loads, no work",
                N_TRADES,
                Sample(tuple(floor.process)).median,
                "polars (a whole process)",
                Sample(tuple(measured["polars"].process)).median,
                "a process that only imports pyarrow, numpy, pydantic(-settings), typer, rich,"
                " structlog and PyYAML",
                "a whole process of polars' lazy group-by",
                f"floor: {floor.text(inside=False)}; polars: {measured['polars'].text()}: the best"
                " ratio any `mdp run` on these libraries could show against polars",
                "trade",
            )
        )
    else:
        print(f"(polars is not installed for {PYTHON}: no polars baseline)")  # noqa: T201
    return rows


FLOOR = (
    "import numpy, pyarrow.compute, pyarrow.parquet, pydantic, pydantic_settings, rich.console,"
    " structlog, typer, yaml"
)
"""What every `mdp run` imports before it reads a row (the libraries alone)."""


def _has(env: dict[str, str], module: str) -> bool:
    code = f"import importlib.util as u; print(bool(u.find_spec({module!r})))"
    found = subprocess.run(  # noqa: S603
        [PYTHON, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return found.stdout.strip() == "True"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "trades.parquet"
        write_trades(path, N_TRADES, N_SYMBOLS)
        rows = processes(path, tmp)
        dag_seconds: list[float] = []
        loop_seconds: list[float] = []
        bars_dag = bars_loop = 0
        for _ in range(REPEAT):
            seconds, bars_dag = timed(lambda: asyncio.run(dag(path)))
            dag_seconds.append(seconds)
            seconds, bars_loop = timed(lambda: hand_written_loop(path))
            loop_seconds.append(seconds)
        if bars_dag != bars_loop:
            sys.exit(f"the DAG made {bars_dag} bars but the loop {bars_loop}: not the same work")
    dag_sample, loop_sample = Sample(tuple(dag_seconds)), Sample(tuple(loop_seconds))
    rows.append(
        Row(
            name="DAG replay->resample_ohlc(1m)->null, in process",
            n=N_TRADES,
            seconds=dag_sample.median,
            baseline="hand-written loop, in process",
            baseline_seconds=loop_sample.median,
            subject_text=f"the DAG runtime in this process ({N_SYMBOLS} symbols,"
            f" {bars_dag:,} bars)",
            baseline_text="a single Python loop over the same Parquet file in this process",
            note=f"DAG {dag_sample.text()}, loop {loop_sample.text()}; no start-up on either"
            " side: quote it next to the whole processes above. The resampler aggregates each"
            " batch with numpy (sort + reduceat) instead of touching every trade in Python;"
            " channels carry 65k-row Arrow batches",
            unit="trade",
        )
    )
    print_table(rows, unit="trades")
    print(  # noqa: T201
        f"\nWhole processes ran on {PYTHON}; medians of {REPEAT} repetitions, the first"
        " included, spread min-max."
    )


if __name__ == "__main__":
    main()

"""Benchmark of scale-out on one machine: 1, 2 and 3 ``mdp run`` worker processes resampling
the same partitioned Redis streams into PostgreSQL, the curve against one worker measured
in the same run.

Setup (not timed): 1M trades of 100 symbols (``MD_BENCH_SCALE_TRADES``) are fed by an
``mdp run`` job (replay -> ``hash_partition`` -> one ``redis_stream`` sink per partition)
into ``PARTITIONS`` streams on a real ``redis-server``. Then, for each worker count N, N
worker processes start at once; worker k owns partitions k, k+N, ... (a ``redis_stream``
provider and a ``resample_ohlc`` per partition, one in-process store sink on PostgreSQL),
reads them through a consumer group of its own (so every run reads everything), and
acknowledges entries after commit. A run is timed from spawn to the exit of its last worker,
minus ``IDLE_STOP`` (how long a provider waits on an idle stream before it ends): whole
processes, start-up included, bytecode compiled first. Best of ``REPEAT``.

The machine has 2 cores: beyond 2 workers, the curve shows the cores, not the design. Each
worker's bars go to a ``source`` of their own, so every run appends.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import yaml
from _report import Row, print_table
from bench_pipeline import write_trades

from market_data_core.testing.servers import RedisServer
from market_data_store.testing import PostgresServer

REPEAT = 3
PARTITIONS = 6
WORKERS = (1, 2, 3)
IDLE_STOP = 0.5
PYTHON = os.environ.get("MD_BENCH_PYTHON", sys.executable)
N_TRADES = int(os.environ.get("MD_BENCH_SCALE_TRADES", "1000000"))
N_SYMBOLS = 100
ROOT = Path(__file__).resolve().parents[1]


def compile_bytecode() -> None:
    for path in [sysconfig.get_paths()["purelib"], *map(str, ROOT.glob("packages/*/src"))]:
        compileall.compile_dir(path, quiet=2, workers=0)
    if sys.executable != PYTHON:
        code = "import compileall, sysconfig; compileall.compile_dir("
        code += "sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
        subprocess.run([PYTHON, "-c", code], check=True)  # noqa: S603


def feed(path: Path, redis_url: str, trades: Path) -> dict[str, object]:
    nodes: list[dict[str, object]] = [
        {"id": "tape", "type": "replay", "params": {"path": str(trades), "batch_size": 20_000}},
        {"id": "split", "type": "hash_partition", "params": {"partitions": PARTITIONS}},
    ]
    edges = ["tape -> split"]
    for p in range(PARTITIONS):
        stream = {"url": redis_url, "stream": f"ticks:{p}", "maxlen": None}
        nodes.append({"id": f"s{p}", "type": "redis_stream", "params": stream})
        edges.append(f"split.p{p} -> s{p}")
    return {"name": "feed", "nodes": nodes, "edges": edges}


def worker(redis_url: str, dsn: str, k: int, n: int, run: str) -> dict[str, object]:
    nodes: list[dict[str, object]] = [{"id": "store", "type": "store", "params": {"database": dsn}}]
    edges = []
    for p in range(k, PARTITIONS, n):
        provider = {
            "url": redis_url,
            "stream": f"ticks:{p}",
            "group": run,
            "consumer": f"w{k}",
            "count": 4,
            "idle_stop": IDLE_STOP,
        }
        resample = {"timeframe": "1m", "source": run}
        nodes.append({"id": f"t{p}", "type": "redis_stream", "params": provider})
        nodes.append({"id": f"m{p}", "type": "resample_ohlc", "params": resample})
        edges += [f"t{p} -> m{p}", f"m{p} -> store"]
    return {"name": f"{run}-w{k}", "nodes": nodes, "edges": edges}


def run_workers(configs: list[Path], env: dict[str, str]) -> float:
    start = time.perf_counter()
    procs = [
        subprocess.Popen(  # noqa: S603
            [PYTHON, "-m", "market_data_pipeline.cli", "run", str(c)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for c in configs
    ]
    try:
        for proc in procs:
            _, errors = proc.communicate(timeout=600)
            if proc.returncode != 0:
                sys.exit(f"a worker failed ({proc.returncode}):\n{errors.decode()[-3000:]}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return time.perf_counter() - start - IDLE_STOP


def main() -> None:
    env = {**os.environ, "MDP_LOG_LEVEL": "warning"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compile_bytecode()
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        PostgresServer() as pg,
        RedisServer() as redis_server,
    ):
        tmp = Path(tmp_name)
        trades = tmp / "trades.parquet"
        write_trades(trades, N_TRADES, N_SYMBOLS)
        feed_file = tmp / "feed.yaml"
        feed_file.write_text(yaml.safe_dump(feed(feed_file, redis_server.url, trades)))
        mdp = [PYTHON, "-m", "market_data_pipeline.cli", "run", str(feed_file)]
        subprocess.run(mdp, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
        times: dict[int, list[float]] = {n: [] for n in WORKERS}
        for rep in range(REPEAT):
            for n in WORKERS:
                run = f"n{n}r{rep}"
                configs = []
                for k in range(n):
                    path = tmp / f"{run}-w{k}.yaml"
                    path.write_text(yaml.safe_dump(worker(redis_server.url, pg.dsn, k, n, run)))
                    configs.append(path)
                times[n].append(run_workers(configs, env))
        one = min(times[1])
        rows = [
            Row(
                f"{n} worker{'s' if n > 1 else ''} x {PARTITIONS} partitions",
                N_TRADES,
                min(times[n]),
                "1 worker",
                one,
                f"{n} `mdp run` processes (redis_stream -> resample_ohlc(1m) -> PostgreSQL,"
                " acked after commit)",
                "one such process reading every partition",
                f"{os.cpu_count()} cores; runs {', '.join(f'{t:.2f}' for t in times[n])} s",
                "tick",
            )
            for n in WORKERS
        ]
        print_table(rows, unit="ticks")
        per_worker = N_TRADES / one
        print(  # noqa: T201
            f"\nOne worker: {per_worker:,.0f} ticks/s with its start-up; N machines of this"
            " kind, each running workers over its share of the partitions, scale until the"
            " store's database or Redis is the bottleneck (docs/operations/scale-out.md)."
        )


if __name__ == "__main__":
    main()

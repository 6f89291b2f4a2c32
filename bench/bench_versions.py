"""Before and after versions, in one run: the store's write path at the commit before
versioned writes (``MD_BENCH_BEFORE``, default d3e2e0a) against this tree, on the same
machine, the same PostgreSQL server and the same third-party packages.

Both trees are installed into virtualenvs of their own (core and store, with the packages
``uv.lock`` pins, nothing else; bytecode compiled), and each measurement is a fresh child
process (``_versions_child.py``) into a fresh database, the two trees alternating. Per
scenario the median seconds over ``REPEAT`` runs of each, their spread (min-max) and each
child's own peak RSS are printed, and the ratio ``after rate / before rate``:

- ``append``: 1M bars (200 symbols x 5,000 minutes) into an empty table, 2 writers of 5,000-bar
  batches (the store's defaults): the append fast path;
- ``replay``: the same bars written again: every key is stored and nothing changes (the
  upsert path; versions compared where the tree has them);
- ``revise``: every bar again with another close (a newer version where the tree has
  versions): every row replaced, and, after, each replaced version kept in history by the
  trigger: the write cost of history;
- ``read``: every bar read back (current state, symbol by symbol, as models) after a
  revision of every bar: reads of the current state must not get slower for history.

And whole processes, the way the main job runs: ``mdp run`` of each tree replaying
1,000,000 trades from Parquet into the store (``mdp-append``: a fresh database;
``mdp-replay``: the same job again, every trade stored already), timed from spawn to exit,
bytecode compiled, each process's own peak RSS (``VmHWM``).

``MD_BENCH_VERSIONS_BARS`` sets the number of bars (default 1,000,000),
``MD_BENCH_VERSIONS_TRADES`` the trades of the ``mdp`` runs (default 1,000,000).
"""

from __future__ import annotations

import asyncio
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import write_trades

from market_data_store.testing import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
BEFORE = os.environ.get("MD_BENCH_BEFORE", "d3e2e0a")
N = int(os.environ.get("MD_BENCH_VERSIONS_BARS", "1000000"))
REPEAT = int(os.environ.get("MD_BENCH_VERSIONS_REPEAT", "3"))
SCENARIOS = ("append", "replay", "revise", "read")
PROCESS_SCENARIOS = ("mdp-append", "mdp-replay")
TRADES = int(os.environ.get("MD_BENCH_VERSIONS_TRADES", "1000000"))
MDP = """
import atexit, json, sys, time
from pathlib import Path
def report():
    peak = next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith("VmHWM:"))
    print(json.dumps({"peak_rss": peak}), file=sys.stderr)
atexit.register(report)
sys.argv = ["mdp", "run", sys.argv[1]]
from market_data_pipeline.cli import main
main()
"""
PG_SETTINGS = {"shared_buffers": "256MB", "max_wal_size": "4GB", "autovacuum": "off"}


def run(argv: list[str], **kwargs: object) -> str:
    done = subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]  # noqa: S603
    return str(done.stdout)


def environment(tree: Path, where: Path, pins: Path) -> str:
    """A virtualenv with ``tree``'s core and store and the pinned third-party packages."""
    python = where / "bin" / "python"
    if not python.exists():
        run(["uv", "venv", "--quiet", "--python", sys.executable, str(where)])
        install = ["uv", "pip", "install", "--quiet", "--python", str(python)]
        run([*install, "--requirements", str(pins)])
        names = ("market-data-core", "market-data-store", "market-data-pipeline")
        packages = [str(tree / "packages" / p) for p in names]
        run([*install, "--no-deps", *packages])
    code = "import compileall, sysconfig; compileall.compile_dir("
    code += "sysconfig.get_paths()['purelib'], quiet=2)"
    run([str(python), "-c", code])
    return str(python)


def before_tree(cache: Path) -> Path:
    tree = cache / f"tree-{BEFORE}"
    if not tree.exists():
        worktree = ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force"]
        run([*worktree, str(tree), BEFORE])
    return tree


def measure(python: str, url: str, scenario: str, env: dict[str, str]) -> dict[str, float]:
    child = str(ROOT / "bench" / "_versions_child.py")
    out = run([python, child, url, scenario, str(N)], env=env, cwd=str(ROOT / "bench"))
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    compileall.compile_dir(str(ROOT / "bench"), quiet=2)
    cache = Path(os.environ.get("MD_BENCH_CACHE", Path.home() / ".cache" / "md-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        pins = tmp / "requirements.txt"
        export = ["uv", "export", "--frozen", "--quiet", "--no-dev", "--no-hashes"]
        export += [
            "--no-emit-workspace",
            "--package",
            "market-data-pipeline",
            "--extra",
            "postgres",
        ]
        run([*export, "--output-file", str(pins)], cwd=str(ROOT))
        pythons = {
            "before": environment(before_tree(cache), tmp / "before", pins),
            "after": environment(ROOT, tmp / "after", pins),
        }
        results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
        trades = tmp / "trades.parquet"
        write_trades(trades, TRADES, 100)
        with PostgresServer(settings=PG_SETTINGS) as server:
            databases = Databases(server, tmp)
            for _ in range(REPEAT):
                for database in ("postgresql", "sqlite"):
                    for scenario in SCENARIOS:
                        for tree, python in pythons.items():
                            got = measure(python, databases.fresh(database), scenario, env)
                            results.setdefault((database, scenario, tree), []).append(got)
                    for tree, python in pythons.items():
                        job = replay_job(tmp, trades, databases.fresh(database))
                        for scenario in PROCESS_SCENARIOS:  # the second run: every key stored
                            got = whole_process(python, job, env)
                            results.setdefault((database, scenario, tree), []).append(got)
        report(results)


class Databases:
    """A fresh database per measurement: a PostgreSQL database, or a SQLite file."""

    def __init__(self, server: PostgresServer, tmp: Path) -> None:
        self.server, self.tmp, self.count = server, tmp, 0

    def fresh(self, database: str) -> str:
        self.count += 1
        if database == "sqlite":
            return f"sqlite:///{self.tmp / f'bench-{self.count}.db'}"
        name = f"bench_{self.count}"
        asyncio.run(self.server.create_database(name))
        return self.server.dsn_for(name)


def replay_job(tmp: Path, trades: Path, url: str) -> Path:
    """The main job's shape: replay a file of trades into the store."""
    job = tmp / f"job-{abs(hash(url))}.yaml"
    replay = f"{{path: '{trades}', kind: trades}}"
    job.write_text(
        "name: versions-bench\nnodes:\n"
        f"  - {{id: trades, type: replay, params: {replay}}}\n"
        f"  - {{id: store, type: store, params: {{database: '{url}'}}}}\n"
        "edges: [trades -> store]\n"
    )
    return job


def whole_process(python: str, job: Path, env: dict[str, str]) -> dict[str, float]:
    """``mdp run job`` in a fresh process: seconds from spawn to exit, its own peak RSS."""
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        [python, "-c", MDP, str(job)], env={**env, "MDP_LOG_LEVEL": "warning"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"mdp run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak = json.loads(done.stderr.strip().splitlines()[-1])["peak_rss"]
    return {"seconds": seconds, "peak_rss": peak, "n": TRADES}


def report(results: dict[tuple[str, str, str], list[dict[str, float]]]) -> None:
    print(f"\nversioned writes: before ({BEFORE}) and after, {N:,} bars, {REPEAT} runs each")  # noqa: T201
    header = (
        f"{'database':<11} {'scenario':<8} {'before rows/s (min-max)':>30}"
        f" {'after rows/s (min-max)':>30} {'ratio':>6} {'peak RSS MiB b/a':>17}"
    )
    print(header)  # noqa: T201
    for database in ("postgresql", "sqlite"):
        for scenario in (*SCENARIOS, *PROCESS_SCENARIOS):
            cells = []
            medians = []
            peaks = []
            for tree in ("before", "after"):
                runs = results[database, scenario, tree]
                rates = [r.get("n", N) / r["seconds"] for r in runs]
                median = statistics.median(rates)
                medians.append(median)
                cells.append(f"{median:,.0f} ({min(rates):,.0f}-{max(rates):,.0f})")
                peaks.append(max(r["peak_rss"] for r in runs) / 2**20)
            ratio = medians[1] / medians[0]
            print(  # noqa: T201
                f"{database:<11} {scenario:<8} {cells[0]:>30} {cells[1]:>30} {ratio:>6.3f}"
                f" {peaks[0]:>7.0f}/{peaks[1]:<7.0f}"
            )


if __name__ == "__main__":
    main()

"""Benchmark of ticks into the store, whole processes: ``mdp run`` replaying 1M trades from
a Parquet file into the store, next to ADBC's ``adbc_ingest`` of the same rows into the same
table on the same server, measured in the same run, like for like.

Subjects (each a fresh ``mdp run`` process, timed from spawn to exit):

- ``mdp run`` replay -> store, PostgreSQL, in process (the pipeline's store sink opens the
  store itself: Arrow batches, binary COPY);
- the same into SQLite (the embedded default);
- the same through ``mds serve`` on PostgreSQL (the sink's ``url``: HTTP to the service).

Baselines: ADBC's ``adbc_ingest(mode="append")`` (binary COPY from Arrow for PostgreSQL;
prepared inserts for SQLite) of the file's rows in the store's layout (``bench/_adbc.py``),
read inside the timed section, into the store's migrated, empty ``trades`` table: the floor
of any path that appends through the database's own bulk interface. Every repetition writes
into a fresh, migrated database.

Like for like: every subject and baseline is a whole process of the same interpreter,
``MD_BENCH_PYTHON`` (the ``bench`` nox session installs the packages and the baselines'
drivers into a virtualenv of their own, as a user does: without the test tools, so without
pandas, which pyarrow imports at its first conversion whenever it is installed); by default
this interpreter. Each figure is the median of ``REPEAT`` repetitions, the first included
(bytecode is compiled before, since this sandbox sets PYTHONDONTWRITEBYTECODE), with its
spread (min-max). Next to the whole processes, the in-process figures: the seconds ``mdp
run --json`` reports for its job and the seconds ADBC spends inside its process. The peak
memory is each child's own (``VmHWM`` at its exit, ``bench/_peak.py``), not the parent's
high-water mark that ``os.wait4`` reports for a child.

``MD_BENCH_INGEST_TRADES`` sets the number of trades (default 1,000,000);
``MD_BENCH_REPEAT`` the repetitions (default 5).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _process import BENCH, PYTHON, Measured, compile_bytecode, run_process
from _report import Row, Sample, print_table
from bench_pipeline import write_trades

from market_data_core.testing.servers import free_port
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer

REPEAT = int(os.environ.get("MD_BENCH_REPEAT", "5"))
N_TRADES = int(os.environ.get("MD_BENCH_INGEST_TRADES", "1000000"))
N_SYMBOLS = 100
PG_SETTINGS = {"shared_buffers": "256MB", "max_wal_size": "4GB", "autovacuum": "off"}


def config(path: Path, parquet: Path, sink: str) -> Path:
    path.write_text(
        "name: ingest-bench\n"
        "nodes:\n"
        f"  - {{id: trades, type: replay, params: {{path: '{parquet}', kind: trades}}}}\n"
        f"  - {{id: store, type: store, params: {sink}}}\n"
        "edges: [trades -> store]\n"
    )
    return path


class Databases:
    """A fresh migrated database per measurement (PostgreSQL and SQLite files)."""

    def __init__(self, server: PostgresServer, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self.count = 0

    def postgres(self) -> str:
        self.count += 1
        name = f"bench_{self.count}"
        asyncio.run(upgrade(asyncio.run(self.server.create_database(name))))
        return self.server.dsn_for(name)

    def sqlite(self) -> str:
        self.count += 1
        path = self.tmp / f"bench-{self.count}.db"
        url = f"sqlite:///{path}"
        asyncio.run(upgrade(DatabaseUrl.parse(url)))
        return url


def main() -> None:
    env = {**os.environ, "MDP_LOG_LEVEL": "warning"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compile_bytecode(env)
    mdp = ["-m", "market_data_pipeline.cli", "run", "--json"]
    with tempfile.TemporaryDirectory() as tmp_name, PostgresServer(settings=PG_SETTINGS) as pg:
        tmp = Path(tmp_name)
        parquet = tmp / "trades.parquet"
        write_trades(parquet, N_TRADES, N_SYMBOLS)
        dbs = Databases(pg, tmp)
        names = ("pg", "sqlite", "http", "adbc_pg", "adbc_sqlite")
        measured = {name: Measured() for name in names}

        def subject(name: str, sink: str) -> None:
            job = config(tmp / f"{name}.yaml", parquet, sink)
            run = run_process([*mdp, str(job)], env, tmp)
            measured[name].add(run, float(json.loads(run.stdout)["seconds"]))

        def adbc(name: str, driver: str, url: str) -> None:
            run = run_process([str(BENCH / "_adbc.py"), driver, url, str(parquet)], env, tmp)
            measured[name].add(run, float(run.stdout))

        for _ in range(REPEAT):  # alternating, the first repetition counted
            adbc("adbc_pg", "postgresql", dbs.postgres())
            subject("pg", f"{{database: '{dbs.postgres()}'}}")
            adbc("adbc_sqlite", "sqlite", dbs.sqlite().removeprefix("sqlite:///"))
            subject("sqlite", f"{{database: '{dbs.sqlite()}'}}")
            with serve(dbs.postgres(), env) as url:
                subject("http", f"{{url: '{url}'}}")
        baseline = {"pg": "adbc_pg", "sqlite": "adbc_sqlite", "http": "adbc_pg"}
        rows = []
        for name, target, database, what in (
            ("pg", "store (PostgreSQL)", "PostgreSQL", "replay, store sink, binary COPY"),
            ("sqlite", "store (SQLite)", "SQLite", "into the embedded default"),
            ("http", "mds serve (PostgreSQL)", "PostgreSQL", "Arrow IPC to `mds serve`"),
        ):
            base = measured[baseline[name]]
            rows.append(
                Row(
                    f"mdp replay->{target}",
                    N_TRADES,
                    Sample(tuple(measured[name].process)).median,
                    f"ADBC adbc_ingest ({database})",
                    Sample(tuple(base.process)).median,
                    f"a whole `mdp run` process ({what})",
                    f"a whole process of ADBC appending the same rows to {database}",
                    f"mdp: {measured[name].text()}; ADBC: {base.text()}",
                    "row",
                )
            )
        print_table(rows, unit="rows")
        has_pandas = subprocess.run(  # noqa: S603
            [PYTHON, "-c", "import importlib.util as u; print(bool(u.find_spec('pandas')))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(  # noqa: T201
            f"\nEvery process ran on {PYTHON} (pandas installed there: {has_pandas});"
            f" medians of {REPEAT} repetitions, the first included, spread min-max."
        )


class serve:  # noqa: N801 - used as a context manager
    """``mds serve`` on ``database`` at a free port, until the block ends."""

    def __init__(self, database: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {**env, "MDS_DATABASE_URL": database, "MDS_ACK": "durable"}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        import httpx  # noqa: PLC0415

        self.process = subprocess.Popen(  # noqa: S603
            [PYTHON, "-m", "market_data_store.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.__exit__()
        sys.exit("mds serve did not become ready in 60 s")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


if __name__ == "__main__":
    main()

"""Benchmark of ticks into the store, whole processes: ``mdp run`` replaying 1M trades from
a Parquet file into the store, next to ADBC's ``adbc_ingest`` of the same Arrow table into
the same table on the same server, measured in the same run.

Subjects (each a fresh ``mdp run`` process, timed from spawn to exit; bytecode compiled
first, since this sandbox sets PYTHONDONTWRITEBYTECODE):

- ``mdp run`` replay -> store, PostgreSQL, in process (the pipeline's store sink opens the
  store itself: Arrow batches, binary COPY);
- the same into SQLite (the embedded default);
- the same through ``mds serve`` on PostgreSQL (the sink's ``url``: HTTP to the service).

Baselines: ADBC's ``adbc_ingest(mode="append")`` (binary COPY from Arrow for PostgreSQL;
prepared inserts for SQLite) of the file's table read inside the timed section, into the
store's migrated, empty ``trades`` table: the floor of any path that appends through the
database's own bulk interface. Every repetition writes into a fresh, migrated database.
Peak RSS of each ``mdp run`` process is printed. Best of ``REPEAT``, alternating.

A second baseline is ADBC as a whole process too: a Python process that imports pyarrow and
the driver, reads the file and appends it, timed from spawn to exit like ``mdp run``.

``MD_BENCH_PYTHON`` is the interpreter that runs ``mdp`` and ``mds`` (the ``bench`` nox
session installs the packages into a virtualenv of their own, as a user does: without the
test tools, so without pandas, which pyarrow imports at its first conversion whenever it is
installed); by default this interpreter.

``MD_BENCH_INGEST_TRADES`` sets the number of trades (default 1,000,000).
"""

from __future__ import annotations

import asyncio
import compileall
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from _report import Row, print_table
from bench_pipeline import write_trades

from market_data_core.testing.servers import free_port
from market_data_store.dsn import DatabaseUrl
from market_data_store.migrate import upgrade
from market_data_store.testing import PostgresServer

REPEAT = 5
PYTHON = os.environ.get("MD_BENCH_PYTHON", sys.executable)
N_TRADES = int(os.environ.get("MD_BENCH_INGEST_TRADES", "1000000"))
N_SYMBOLS = 100
PG_SETTINGS = {"shared_buffers": "256MB", "max_wal_size": "4GB", "autovacuum": "off"}
ROOT = Path(__file__).resolve().parents[1]


def compile_bytecode(env: dict[str, str]) -> None:
    """Bytecode for this interpreter's and ``PYTHON``'s packages (each once)."""
    paths = [sysconfig.get_paths()["purelib"], *(str(p) for p in ROOT.glob("packages/*/src"))]
    for path in paths:
        compileall.compile_dir(path, quiet=2, workers=0)
    if sys.executable != PYTHON:
        code = "import compileall, sysconfig; compileall.compile_dir("
        code += "sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
        subprocess.run([PYTHON, "-c", code], env=env, check=True)  # noqa: S603


def config(path: Path, parquet: Path, sink: str) -> Path:
    path.write_text(
        "name: ingest-bench\n"
        "nodes:\n"
        f"  - {{id: trades, type: replay, params: {{path: '{parquet}', kind: trades}}}}\n"
        f"  - {{id: store, type: store, params: {sink}}}\n"
        "edges: [trades -> store]\n"
    )
    return path


def run_process(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Seconds from spawn to exit, and the process's peak RSS in MiB."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({process.returncode}):\n{errors.decode()[-3000:]}")
    return seconds, usage.ru_maxrss // 1024


ADBC_PROCESS = """
import sys
sys.path.insert(0, {bench!r})
from bench_ingest import adbc_ingest
adbc_ingest({url!r}, {parquet!r}, "postgresql")
"""


def adbc_ingest(url: str, parquet: Path | str, driver: str) -> float:
    """ADBC: read the file and append it to the empty trades table, committed."""
    start = time.perf_counter()
    table = pq.read_table(parquet)
    stored = pa.table(
        {
            "symbol": table.column("symbol"),
            "ts": table.column("ts"),
            "trade_id": pa.repeat("", table.num_rows),
            "price": table.column("price"),
            "size": table.column("size"),
            "exchange": pa.nulls(table.num_rows, pa.string()),
            "ingested_at": pa.repeat(
                pa.scalar(time.time_ns() // 1000, pa.timestamp("us", tz="UTC")), table.num_rows
            ),
        }
    )
    if driver == "postgresql":
        from adbc_driver_postgresql import dbapi  # noqa: PLC0415
    else:
        from adbc_driver_sqlite import dbapi  # type: ignore[no-redef]  # noqa: PLC0415

        stored = stored.set_column(1, "ts", pc.cast(stored.column("ts"), pa.int64()))
        stored = stored.set_column(6, "ingested_at", pc.cast(stored.column(6), pa.int64()))
    with dbapi.connect(url) as connection:
        with connection.cursor() as cursor:
            cursor.adbc_ingest("trades", stored, mode="append")
        connection.commit()
    return time.perf_counter() - start


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


def best(fn: Callable[[], float], repeat: int = REPEAT) -> float:
    return min(fn() for _ in range(repeat))


def main() -> None:
    env = {**os.environ, "MDP_LOG_LEVEL": "warning"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compile_bytecode(env)
    mdp = [PYTHON, "-m", "market_data_pipeline.cli", "run"]
    with tempfile.TemporaryDirectory() as tmp_name, PostgresServer(settings=PG_SETTINGS) as pg:
        tmp = Path(tmp_name)
        parquet = tmp / "trades.parquet"
        write_trades(parquet, N_TRADES, N_SYMBOLS)
        dbs = Databases(pg, tmp)
        rss: dict[str, int] = {}
        names = ("pg", "sqlite", "http", "adbc_pg", "adbc_sqlite", "adbc_process")
        times: dict[str, list[float]] = {name: [] for name in names}

        def subject(name: str, sink: Callable[[], str]) -> None:
            job = config(tmp / f"{name}.yaml", parquet, sink())
            seconds, peak = run_process([*mdp, str(job)], env)
            times[name].append(seconds)
            rss[name] = max(rss.get(name, 0), peak)

        for _ in range(REPEAT):
            times["adbc_pg"].append(adbc_ingest(dbs.postgres(), parquet, "postgresql"))
            subject("pg", lambda: f"{{database: '{dbs.postgres()}'}}")
            times["adbc_sqlite"].append(
                adbc_ingest(dbs.sqlite().removeprefix("sqlite:///"), parquet, "sqlite")
            )
            subject("sqlite", lambda: f"{{database: '{dbs.sqlite()}'}}")
            with serve(dbs.postgres(), env) as url:
                subject("http", lambda url=url: f"{{url: '{url}'}}")
            code = ADBC_PROCESS.format(
                bench=str(ROOT / "bench"), url=dbs.postgres(), parquet=str(parquet)
            )
            times["adbc_process"].append(run_process([sys.executable, "-c", code], env)[0])
        adbc = {"pg": min(times["adbc_pg"]), "sqlite": min(times["adbc_sqlite"])}
        adbc["http"] = adbc["pg"]
        adbc["pg_process"] = min(times["adbc_process"])
        times["pg_process"] = times["pg"]
        rss["pg_process"] = rss["pg"]
        rows = [
            Row(
                f"mdp replay->{target}",
                N_TRADES,
                min(times[name]),
                f"ADBC adbc_ingest ({database})",
                adbc[name],
                f"a whole `mdp run` process ({what})",
                f"ADBC appending the same table to {database}",
                f"peak RSS of mdp {rss[name]} MiB",
                "row",
            )
            for name, target, database, what in (
                ("pg", "store (PostgreSQL)", "PostgreSQL", "replay, store sink, binary COPY"),
                ("sqlite", "store (SQLite)", "SQLite", "into the embedded default"),
                ("http", "mds serve (PostgreSQL)", "PostgreSQL", "Arrow IPC to `mds serve`"),
                (
                    "pg_process",
                    "store (PostgreSQL)",
                    "PostgreSQL, a whole process",
                    "against ADBC as a process too",
                ),
            )
        ]
        print_table(rows, unit="rows")
        has_pandas = subprocess.run(  # noqa: S603
            [PYTHON, "-c", "import importlib.util as u; print(bool(u.find_spec('pandas')))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(f"\n`mdp`/`mds` ran on {PYTHON} (pandas installed there: {has_pandas}).")  # noqa: T201


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

"""``export_dataset`` / ``mds export``: a Hive-partitioned Parquet dataset (kind / symbol /
date) that DuckDB, polars and pyarrow read as it is, equal to the store, on SQLite and
PostgreSQL; brought up to date incrementally (only changed partitions rewritten: new rows,
revisions, retention's deletions). Nothing is mocked."""

import random
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import pytest_asyncio
from typer.testing import CliRunner

from market_data_core.testing import T0, make_bar, make_trade
from market_data_store import connect
from market_data_store.cli import app
from market_data_store.dsn import DatabaseUrl
from market_data_store.read.export import MANIFEST, export_dataset, partition_path

pytestmark = pytest.mark.asyncio
SYMBOLS = ["BTC/USDT", "ES=F", "^GSPC", "AAPL"]
DAY = timedelta(days=1)


@dataclass
class Store:
    url: DatabaseUrl
    backend: Any

    @property
    def text(self) -> str:
        return self.url.secret()


@pytest_asyncio.fixture
async def store(any_backend: Any) -> Store:
    backend = any_backend
    rng = random.Random(5)
    trades = [
        make_trade(symbol=rng.choice(SYMBOLS), ordinal=n, price=float(n),
                   ts=T0 + timedelta(seconds=rng.randrange(3 * 86_400), microseconds=n % 999))
        for n in range(900)
    ]  # fmt: skip
    hour = T0.replace(minute=0)
    bars = [make_bar(symbol=s, start=hour + timedelta(hours=h), timeframe=tf)
            for s in SYMBOLS[:2] for h in range(60) for tf in ("1h", "1m")]  # fmt: skip
    await backend.write([*trades, *bars])
    return Store(backend.url, backend)


def _duckdb(root: Path, kind: str) -> pa.Table:
    path = (root / f"kind={kind}" / "**" / "*.parquet").as_posix()
    with duckdb.connect() as db:
        table = db.sql(f"SELECT * FROM read_parquet('{path}', hive_partitioning=true)").arrow()
    return table.read_all() if isinstance(table, pa.RecordBatchReader) else table


def _same_rows(got: pa.Table, store: pa.Table, order: list[str]) -> None:
    """``got`` (a reader's view of the dataset) holds exactly the store's rows."""
    columns = store.column_names
    got = got.select(columns).cast(store.schema)
    assert got.sort_by([(c, "ascending") for c in order]).equals(
        store.sort_by([(c, "ascending") for c in order])
    )


async def test_duckdb_polars_and_pyarrow_read_the_dataset_as_the_store(
    store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "dataset"
    report = export_dataset(store.text, root)
    assert report.written == report.files.__len__() > 10
    trades = connect(store.text).trades().to_arrow()
    order = ["symbol", "ts", "ordinal"]
    assert (root / partition_path("trades", "BTC/USDT", T0.date())).is_dir()
    assert (root / "kind=trades" / "symbol=BTC%2FUSDT").is_dir()  # escaped, as pyarrow does

    _same_rows(_duckdb(root, "trades"), trades, order)
    polars = pl.scan_parquet(root / "kind=trades" / "**" / "*.parquet", hive_partitioning=True)
    _same_rows(polars.collect().to_arrow(), trades, order)
    dataset = ds.dataset(root / "kind=trades", format="parquet", partitioning="hive")
    _same_rows(dataset.to_table(), trades, order)
    days = {ts.date().isoformat() for ts in trades.column("ts").to_pylist()}
    assert len(days) == 4
    assert set(_duckdb(root, "trades").column("date").cast(pa.string()).to_pylist()) == days

    bars = connect(store.text)
    every = pa.concat_tables([bars.bars(None, "1h").to_arrow(), bars.bars(None, "1m").to_arrow()])
    _same_rows(_duckdb(root, "bars"), every, ["symbol", "timeframe", "start"])


async def test_a_second_export_rewrites_only_what_changed(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    first = export_dataset(store.text, root, kinds=["trades"])
    again = export_dataset(store.text, root, kinds=["trades"])
    assert (again.written, again.removed, again.unchanged) == (0, 0, first.written)

    day2 = T0 + DAY
    old = connect(store.text).trades("BTC/USDT", day2, day2 + DAY).to_pandas()
    revised = make_trade(symbol="BTC/USDT", ts=old["ts"][0].to_pydatetime(),
                         ordinal=int(old["ordinal"][0]), price=-1.0, revision=1)  # fmt: skip
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    await store.backend.write([revised])
    update = export_dataset(store.text, root, kinds=["trades"])
    assert (update.written, update.removed) == (1, 0)
    changed = root / partition_path("trades", "BTC/USDT", day2.date()) / "part-0.parquet"
    assert update.files == [changed]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != changed)
    assert -1.0 in pl.read_parquet(changed)["price"].to_list()

    midnight = (T0 + DAY).replace(hour=0, minute=0)
    await store.backend.delete_before("trades", midnight)  # retention: the first day goes
    pruned = export_dataset(store.text, root, kinds=["trades"])
    assert pruned.removed == len(SYMBOLS)
    assert pruned.written == 0
    assert not (root / partition_path("trades", "AAPL", T0.date())).exists()
    _same_rows(_duckdb(root, "trades"), connect(store.text).trades().to_arrow(),
               ["symbol", "ts", "ordinal"])  # fmt: skip
    assert (root / MANIFEST).is_file()


async def test_mds_export_writes_a_dataset_and_says_what_it_did(
    store: Store, tmp_path: Path
) -> None:
    runner = CliRunner()
    root = tmp_path / "out"
    env = {"MDS_DATABASE_URL": store.text, "COLUMNS": "200"}
    result = runner.invoke(app, ["export", "-o", str(root), "--kind", "trades"], env=env)
    assert result.exit_code == 0, result.output
    assert "partitions written (900 rows)" in result.output
    again = runner.invoke(app, ["export", "-o", str(root), "-k", "trades"], env=env)
    assert "0 partitions written (0 rows), 16 unchanged, 0 removed" in again.output  # 4 x 4 days
    bad = runner.invoke(app, ["export", "-o", str(root), "-k", "signals"], env=env)
    assert bad.exit_code == 2
    assert "--kind 'signals': one of bars, trades, quotes" in bad.output
    assert store.url.password is None or store.url.password not in bad.output

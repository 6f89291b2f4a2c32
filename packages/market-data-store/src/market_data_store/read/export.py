"""Export to a partitioned Parquet dataset that DuckDB, polars and pyarrow read as it is.

The layout is Hive's, one file per kind, symbol and UTC day::

    out/kind=trades/symbol=BTC%2FUSDT/date=2021-01-08/part-0.parquet

A symbol is escaped as pyarrow's Hive partitioning escapes it (percent-encoding of every
byte but ``A-Z a-z 0-9 - . _ ~``), which DuckDB, polars and pyarrow decode; each file also
holds the ``symbol`` column (and every column of core's schema of its kind), so a reader
that ignores the directory names loses nothing.

Incremental: ``_mds_export.json`` keeps, per partition, its row count and the newest
``ingested_at`` (when the store learned a row: a revision raises it). A later export asks
the database for both per partition and rewrites only those that differ: new data,
revisions, and retention's deletions (fewer rows; a partition gone from the store is
removed from the dataset). Unchanged partitions are not read. Each file is written beside
its place and renamed into it, so a reader (or a killed export) never sees half a file;
the manifest is written last, so an export cut short is finished by the next one.

Runs of changed partitions of one symbol are read with one query, in the read's order
(symbol, then time), and split by day as they stream: one file open at a time, memory
bounded by a batch, whatever the row count.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from market_data_core.columns import SCHEMAS, Kind
from market_data_core.timestamps import to_ns
from market_data_store.backends._layout import LAYOUTS
from market_data_store.exceptions import ReadError
from market_data_store.read.query import READ_KINDS, ReadQuery
from market_data_store.read.sources import (
    HttpSource,
    PostgresSource,
    Source,
    SqliteSource,
    open_source,
)

__all__ = ["ExportReport", "export_dataset", "partition_path"]

MANIFEST: Final = "_mds_export.json"
_DAY_NS: Final = 86_400 * 10**9
_EPOCH: Final = date(1970, 1, 1)


def partition_path(kind: Kind | str, symbol: str, day: date) -> Path:
    """The directory of one partition, relative to the dataset's root."""
    return Path(f"kind={kind}", f"symbol={quote(symbol, safe='')}", f"date={day.isoformat()}")


@dataclass(frozen=True, slots=True)
class _Partition:
    kind: Kind
    symbol: str
    day: date
    rows: int
    newest: str  # the newest ingested_at, as the database gives it (compared, not parsed)

    @property
    def key(self) -> str:
        return partition_path(self.kind, self.symbol, self.day).as_posix()


@dataclass
class ExportReport:
    """What an export did: partitions written, left as they were, and removed."""

    written: int = 0
    unchanged: int = 0
    removed: int = 0
    rows: int = 0
    files: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.written} partitions written ({self.rows} rows), {self.unchanged} unchanged,"
            f" {self.removed} removed"
        )


def export_dataset(
    url: str | Path,
    directory: str | Path,
    *,
    kinds: Iterable[Kind | str] = READ_KINDS,
    symbols: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export (or bring up to date) the dataset at ``directory`` from the store at ``url``
    (an SQLite path or URL, or a PostgreSQL URL): every kind of ``kinds`` (bars of every
    timeframe share a partition; ``timeframe`` is a column), ``symbols`` or all of them."""
    source = open_source(url)
    if isinstance(source, HttpSource):
        msg = "export reads the database itself: give its URL, not the service's"
        raise ReadError(msg)
    chosen = [ReadQuery.kind_of(kind) for kind in kinds]
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    with _only_export(root):
        return _export(source, root, chosen, symbols, progress)


@contextlib.contextmanager
def _only_export(root: Path) -> Iterator[None]:
    """One export at a time per directory (an advisory lock), and no leftovers of an
    export that was killed (its half-written files, hidden, are removed)."""
    with (root / ".mds_export.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"another export is writing {root}: wait for it to finish"
            raise ReadError(msg) from None
        for partial in root.rglob(".*.partial"):
            partial.unlink(missing_ok=True)
        yield


def _export(
    source: Source,
    root: Path,
    chosen: list[Kind],
    symbols: Sequence[str] | None,
    progress: Callable[[str], None] | None,
) -> ExportReport:
    """The export itself. Each partition's row count and newest ``ingested_at`` are taken
    before its rows are read, so the file holds at least what the manifest says: rows
    that arrive in between make the next export rewrite it, never skip it."""
    before = _load_manifest(root)
    after: dict[str, dict[str, Any]] = {}
    report = ExportReport()
    for kind in chosen:
        current = _partitions(source, kind, symbols)
        for partition in current:
            after[partition.key] = {"rows": partition.rows, "newest": partition.newest}
        changed = {p.key for p in current if before.get(p.key) != after[p.key]}
        report.unchanged += len(current) - len(changed)
        for run in _runs(current, changed):
            _write_run(source, root, run, report, progress)
    exported = {f"kind={kind}/" for kind in chosen}
    for key in before:
        if key not in after and key.split("/", 1)[0] + "/" in exported:
            if symbols is None or _symbol_of(key) in symbols:
                _remove(root, key)
                report.removed += 1
            else:
                after[key] = before[key]
        elif key not in after:
            after[key] = before[key]  # a kind this export left alone
    _save_manifest(root, after)
    return report


def _symbol_of(key: str) -> str:
    return unquote(key.split("/")[1].removeprefix("symbol="))


def _runs(partitions: list[_Partition], changed: set[str]) -> list[list[_Partition]]:
    """Changed partitions grouped into runs one query can read: the same symbol, with no
    unchanged partition of that symbol between them."""
    runs: list[list[_Partition]] = []
    ordered = sorted(partitions, key=lambda p: (p.symbol, p.day))
    run: list[_Partition] = []
    for partition in ordered:
        if partition.key in changed and run and run[-1].symbol == partition.symbol:
            run.append(partition)
        elif partition.key in changed:
            if run:
                runs.append(run)
            run = [partition]
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    return runs


def _write_run(
    source: Source,
    root: Path,
    run: list[_Partition],
    report: ExportReport,
    progress: Callable[[str], None] | None,
) -> None:
    kind, symbol = run[0].kind, run[0].symbol
    first = datetime.combine(run[0].day, datetime.min.time(), UTC)
    last = datetime.combine(run[-1].day, datetime.min.time(), UTC) + timedelta(days=1)
    query = ReadQuery(kind, (symbol,), to_ns(first), to_ns(last))  # bars: every timeframe
    days = {p.day: p for p in run}
    writer: _PartitionWriter | None = None
    for batch in source.batches(query):
        for day, piece in _by_day(batch, LAYOUTS[kind].time):
            if writer is not None and writer.day != day:
                report.rows += writer.close()
                report.written += 1
                report.files.append(writer.path)
                writer = None
            if day not in days:  # rows of a day that came after the count: the next export's
                continue
            if writer is None:
                writer = _PartitionWriter(root, kind, symbol, day)
                if progress is not None:
                    progress(days[day].key)
            writer.write(piece)
    if writer is not None:
        report.rows += writer.close()
        report.written += 1
        report.files.append(writer.path)


def _by_day(batch: pa.RecordBatch, time: str) -> Iterable[tuple[date, pa.RecordBatch]]:
    """``batch`` (in time order) cut at UTC midnights."""
    if batch.num_rows == 0:
        return
    nanos = np.asarray(pc.cast(batch.column(time), pa.int64()).to_numpy(), dtype=np.int64)
    days = nanos // _DAY_NS
    cuts = np.flatnonzero(np.diff(days)) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), batch.num_rows]
    for start, end in zip(starts, ends, strict=True):
        yield _EPOCH + timedelta(days=int(days[start])), batch.slice(start, end - start)


class _PartitionWriter:
    """One partition's file, written beside its place and renamed into it on ``close``."""

    def __init__(self, root: Path, kind: Kind, symbol: str, day: date) -> None:
        self.day = day
        folder = root / partition_path(kind, symbol, day)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "part-0.parquet"
        self._partial = folder / f".part-0.parquet.{os.getpid()}.partial"
        self._writer = pq.ParquetWriter(self._partial, SCHEMAS[kind])
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self._rows += batch.num_rows

    def close(self) -> int:
        self._writer.close()
        self._partial.replace(self.path)
        return self._rows


def _remove(root: Path, key: str) -> None:
    folder = root / key
    for path in folder.glob("*"):
        path.unlink()
    for parent in (folder, folder.parent):
        try:
            parent.rmdir()
        except OSError:  # not empty: another day of the symbol is still there
            break


def _load_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
        partitions: dict[str, Any] = manifest["partitions"]
    except (ValueError, KeyError, TypeError) as exc:
        msg = f"{path} is not an export manifest ({exc}): remove it to export everything again"
        raise ReadError(msg) from None
    return partitions


def _save_manifest(root: Path, partitions: dict[str, Any]) -> None:
    path = root / MANIFEST
    partial = root / f".{MANIFEST}.partial"
    body = {"format": 1, "partitions": dict(sorted(partitions.items()))}
    partial.write_text(json.dumps(body, indent=1) + "\n")
    partial.replace(path)


# --- what the database holds, per partition --------------------------------------------


def _partitions(source: Source, kind: Kind, symbols: Sequence[str] | None) -> list[_Partition]:
    """Each (symbol, UTC day) of ``kind`` in the store: its rows and newest ``ingested_at``."""
    time = LAYOUTS[kind].time
    if isinstance(source, SqliteSource):
        sql = (
            f"SELECT symbol, strftime('%Y-%m-%d', \"{time}\" / 1e6, 'unixepoch'),"
            f" count(*), max(ingested_at) FROM {kind} GROUP BY 1, 2"
        )
        rows = source.rows(sql, kind)
    elif isinstance(source, PostgresSource):
        sql = (
            f"SELECT symbol, to_char(\"{time}\" AT TIME ZONE 'UTC', 'YYYY-MM-DD'),"
            f" count(*), max(ingested_at)::text FROM {kind} GROUP BY 1, 2"
        )
        rows = source.rows(sql, kind)
    else:  # pragma: no cover - open_source makes only these
        msg = f"cannot export from {source.describe()}"
        raise ReadError(msg)
    wanted = None if symbols is None else set(symbols)
    return [
        _Partition(kind, symbol, date.fromisoformat(day), int(count), str(newest))
        for symbol, day, count, newest in rows
        if wanted is None or symbol in wanted
    ]

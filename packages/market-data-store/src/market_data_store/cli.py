"""``mds``: the store's command line (migrate, serve, ingest, query, health, dlq).

Every option can also come from its ``MDS_`` environment variable (shown in ``--help``);
a flag wins over the variable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from market_data_core.cli import fail, version_option

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from market_data_store.dlq import ReplayResult
    from market_data_store.settings import StoreSettings

# Only typer, rich and the standard library at import time: `mds --help` and `--version`
# stay fast. Each command imports pydantic, SQLAlchemy, the backends... when it runs.

T = TypeVar("T")

app = typer.Typer(
    help="market-data-store: migrate, serve, ingest, query, health.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: Typer's Rich panels print `<bool>` after every flag
)
dlq_app = typer.Typer(
    help="The dead-letter store of batches that could not be written.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(dlq_app, name="dlq")
console = Console(stderr=True)
out = Console()

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="MDS_DATABASE_URL",
        show_envvar=True,
        help="sqlite:///path or postgresql://...",
    ),
]
Table_ = Annotated[str, typer.Option("--table", "-t", help="bars, trades, quotes or signals")]


@app.callback()
def _main(
    show_version: Annotated[bool, version_option("market-data-store")] = False,
) -> None:
    """market-data-store: migrate, serve, ingest, query, health."""


def _settings(database_url: str | None = None, **overrides: Any) -> StoreSettings:
    from pydantic import SecretStr, ValidationError  # noqa: PLC0415

    from market_data_store.settings import StoreSettings  # noqa: PLC0415

    values = {k: v for k, v in overrides.items() if v is not None}
    if database_url is not None:
        values["database_url"] = SecretStr(database_url)
    try:
        return StoreSettings(**values)
    except ValidationError as exc:
        # field names and messages only: the rejected input may hold a password
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid settings: {problems}", code=2) from None


def _run(work: Coroutine[Any, Any, T], settings: StoreSettings) -> T:
    """``asyncio.run(work)`` (asyncio imported only by the commands that need it); a store
    error is one line naming the database, not a traceback."""
    from market_data_store.exceptions import StoreError  # noqa: PLC0415

    try:
        return _run_async(work)
    except (StoreError, OSError) as exc:
        raise _fail(f"{settings.database}: {exc}") from None


def _run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, with asyncio imported only by the commands that need it."""
    import asyncio  # noqa: PLC0415

    return asyncio.run(coroutine)


def _fail(message: str, code: int = 1) -> typer.Exit:
    return fail(console, message, code)


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Apply the schema migrations to the database."""
    from market_data_store.exceptions import StoreError  # noqa: PLC0415
    from market_data_store.migrate import upgrade  # noqa: PLC0415

    settings = _settings(database_url)
    try:
        revision = _run_async(upgrade(settings.database))
    except (StoreError, OSError) as exc:
        raise _fail(f"{settings.database}: {exc}") from None
    out.print(f"{settings.database} is at revision {revision}")


@app.command()
def serve(
    database_url: DatabaseOption = None,
    host: Annotated[
        str | None, typer.Option(envvar="MDS_HOST", show_envvar=True, show_default="127.0.0.1")
    ] = None,
    port: Annotated[
        int | None, typer.Option(envvar="MDS_PORT", show_envvar=True, show_default="8080")
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(envvar="MDS_ADMIN_TOKEN", show_envvar=True, help="enables /v1/admin"),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="MDS_REDIS_URL", show_envvar=True, help="publish feedback on Redis"),
    ] = None,
) -> None:
    """Run the HTTP service (uvicorn); migrations are applied on start. SIGTERM drains the
    write queue for up to MDS_DRAIN_TIMEOUT seconds, then dead-letters the rest and exits."""
    from pydantic import SecretStr  # noqa: PLC0415

    from market_data_core.serving import PortInUseError, bind  # noqa: PLC0415
    from market_data_store.logs import configure_logging  # noqa: PLC0415
    from market_data_store.service.server import serve as run  # noqa: PLC0415

    settings = _settings(
        database_url,
        host=host,
        port=port,
        admin_token=SecretStr(admin_token) if admin_token else None,
        redis_url=SecretStr(redis_url) if redis_url else None,
    )
    try:  # before anything starts: a port in use is one line, with the fix
        sock = bind(settings.host, settings.port, fix="choose another with --port or MDS_PORT")
    except PortInUseError as error:
        raise _fail(str(error), 2) from None
    configure_logging(json=settings.log_json)
    run(settings, sock)


@app.command()
def ingest(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="NDJSON, CSV or Parquet")
    ],
    table: Table_ = "bars",
    database_url: DatabaseOption = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 5_000,
    source: Annotated[str | None, typer.Option(help="For rows without a source")] = None,
    symbol: Annotated[str | None, typer.Option(help="For rows without a symbol")] = None,
    timeframe: Annotated[str | None, typer.Option(help="For bars without a timeframe")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Read naive timestamps in this zone (e.g. UTC)")
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            help=(
                "The version of rows without as_of: when their content was known (UTC;"
                " default: each file's modification time). A corrected file is newer."
            ),
        ),
    ] = None,
) -> None:
    """Validate every row of FILES (.gz too) and write them (idempotent: a second run of the
    same files changes nothing; a corrected file, newer, replaces what it corrects)."""
    from market_data_store.exceptions import StoreError  # noqa: PLC0415

    settings = _settings(database_url)
    defaults = {
        key: value
        for key, value in (("source", source), ("symbol", symbol), ("timeframe", timeframe))
        if value is not None
    }
    try:
        read, stored = _run_async(
            _ingest(
                settings, files, table, batch_size, defaults=defaults, timezone=timezone,
                as_of=_utc(as_of),
            )
        )  # fmt: skip
    except StoreError as exc:
        raise _fail(str(exc), 2) from None
    line = f"wrote {stored} {table} to {settings.database}"
    if stored != read:
        line += f" (read {read}: {read - stored} repeated the key of another row, the newest kept)"
    out.print(line, soft_wrap=True)  # a path stays whole to copy


async def _ingest(
    settings: StoreSettings,
    files: list[Path],
    table: str,
    batch_size: int,
    *,
    defaults: dict[str, str] | None = None,
    timezone: str | None = None,
    as_of: datetime | None = None,
) -> tuple[int, int]:
    """Rows read from ``files``, and rows the database upserted (fewer when rows repeat a
    key: the newest version is kept). Rows without ``as_of`` take ``as_of`` (default: the
    file's modification time); ticks without an id their ordinal in the file."""
    from market_data_core.columns import Kind, Ordinals, from_models  # noqa: PLC0415
    from market_data_store._progress import FileProgress  # noqa: PLC0415
    from market_data_store.exceptions import StoreError  # noqa: PLC0415
    from market_data_store.files import ReadProgress, batches, read_records  # noqa: PLC0415
    from market_data_store.store import Store  # noqa: PLC0415

    total = 0
    async with Store(settings) as store:
        await store.migrate()
        for path in files:
            known = {"as_of": as_of or _modified(path)}
            read = ReadProgress()
            rows = read_records(
                path, table, defaults={**known, **(defaults or {})}, timezone=timezone,
                progress=read,
            )  # fmt: skip
            ordinals = Ordinals()  # per file, whatever the batch size
            counted = 0
            with FileProgress(console, path.name, read) as progress:
                for batch in batches(rows, batch_size):
                    data = ordinals.assign(from_models(batch, table), Kind(table))
                    await store.submit_arrow(data, table)
                    counted += len(batch)
                    progress.update(counted)
            progress.finish(counted)
            total += counted
        await store.flush()
        stats = store.coordinator.stats()
        stored = getattr(store.rows_upserted, table)
    if stats.dead_lettered or stats.dropped or stats.failed:
        msg = (
            f"{stats.dead_lettered} records dead-lettered, {stats.dropped} dropped, "
            f"{stats.failed} failed (see {settings.dead_letter_path})"
        )
        raise StoreError(msg)
    return total, stored


@app.command()
def query(
    symbol: str,
    timeframe: Annotated[str, typer.Option("--timeframe", "-f")] = "1m",
    start: Annotated[datetime | None, typer.Option(help="UTC; default: epoch")] = None,
    end: Annotated[datetime | None, typer.Option(help="UTC; default: now")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000)] = 100,
    kind: Annotated[
        str, typer.Option(help="bars, trades or quotes (other than bars: not --format table)")
    ] = "bars",
    output_format: Annotated[
        str,
        typer.Option("--format", help="table, json (NDJSON), csv, arrow (IPC stream) or parquet"),
    ] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout)")
    ] = None,
    as_known_at: Annotated[
        datetime | None,
        typer.Option(
            "--as-known-at",
            help="Read the versions the store held at this time (UTC) instead of the current",
        ),
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Print bars (or trades, quotes) of SYMBOL in [start, end), as they are now or as the
    store knew them at a time (--as-known-at)."""
    output_format = "json" if as_json else output_format.lower()
    if output_format not in {"table", "json", "ndjson", "csv", "arrow", "parquet"}:
        raise _fail(f"unknown --format {output_format!r}: table, json, csv, arrow or parquet", 2)
    if kind not in {"bars", "trades", "quotes"}:
        raise _fail(f"unknown --kind {kind!r}: bars, trades or quotes", 2)
    settings = _settings(database_url)
    begin = _utc(start) or datetime(1970, 1, 1, tzinfo=UTC)
    finish = _utc(end) or datetime.now(UTC)
    known = _known_at(settings, as_known_at)
    if output_format != "table" or kind != "bars":
        if output_format == "table":
            raise _fail("--format table shows bars only: choose json, csv, arrow or parquet", 2)
        table = _run(
            _query_table(settings, kind, symbol, timeframe, begin, finish, limit, known), settings
        )
        _write_table(table, output_format, output)
        return
    bars = _run(_query(settings, symbol, timeframe, begin, finish, limit, known), settings)
    out.print(_bars_view(bars, f"{symbol} {timeframe}", out.width))


_PRICES = ("open", "high", "low", "close")
_LEFT_OUT = ("source", "volume", "open", "high", "low")
"""The columns of ``mds query`` left out first when a terminal is too narrow for all."""


def _bars_view(bars: list[Any], title: str, width: int) -> Any:
    """The bars as a table that fits ``width``: whole timestamps (ISO 8601, UTC as ``Z``),
    prices to one precision (the most decimals one of them needs), volumes to theirs,
    right-aligned; ``source`` in the title when every bar has the same. When the terminal
    is too narrow, columns are left out (``source``, ``volume``, then ``open``, ``high``,
    ``low``), never cut, and the caption says which."""
    from rich.table import Table  # noqa: PLC0415

    sources = sorted({bar.source for bar in bars})
    columns: dict[str, list[str]] = {"start": [_iso(bar.start) for bar in bars]}
    if len(sources) > 1:
        columns["source"] = [bar.source for bar in bars]
    prices = _decimals([getattr(bar, name) for bar in bars for name in _PRICES])
    for index, name in enumerate(_PRICES):
        columns[name] = prices[index :: len(_PRICES)]
    columns["volume"] = _decimals([bar.volume for bar in bars])
    left_out = []
    for name in _LEFT_OUT:
        if _table_width(columns) <= width:
            break
        if name in columns:
            del columns[name]
            left_out.append(name)
    if len(sources) == 1:
        title += f" (source {sources[0]})"
    caption = None
    if left_out:
        caption = f"left out to fit the terminal: {', '.join(left_out)} (--json has every field)"
    view = Table(title=title, caption=caption)
    for name, cells in columns.items():
        view.add_column(
            name,
            justify="left" if name in {"start", "source"} else "right",
            no_wrap=True,
            min_width=max([len(name), *map(len, cells)]),
        )
    for row in zip(*columns.values(), strict=True):
        view.add_row(*row)
    return view


def _table_width(columns: dict[str, list[str]]) -> int:
    """The width of rich's default table of ``columns``: cells, padding and borders."""
    return sum(max([len(n), *map(len, c)]) + 3 for n, c in columns.items()) + 1


def _decimals(values: list[float]) -> list[str]:
    """``values`` with the same number of decimals, the most any of them needs (in its
    shortest exact form: 435.3 and 435.25 as 435.30 and 435.25)."""
    places = max((_places(v) for v in values), default=0)
    return [f"{v:.{places}f}" for v in values]


def _places(value: float) -> int:
    """Decimals of the shortest text that reads back as ``value`` (at most 12)."""
    from decimal import Decimal  # noqa: PLC0415

    exponent = Decimal(repr(float(value))).normalize().as_tuple().exponent
    return min(max(-exponent, 0), 12) if isinstance(exponent, int) else 0


def _iso(value: datetime) -> str:
    """ISO 8601 in UTC with ``Z``, to the nanosecond when the value has them."""
    return value.isoformat().replace("+00:00", "Z")


async def _query_table(
    settings: StoreSettings,
    kind: str,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    limit: int,
    as_known_at: datetime | None = None,
) -> Any:
    from market_data_store.columnar import Kind  # noqa: PLC0415
    from market_data_store.store import make_backend  # noqa: PLC0415

    backend: Any = make_backend(settings.database)
    await backend.open()
    try:
        return await backend.query_table(
            Kind(kind), symbol, start, end, limit=limit, as_known_at=as_known_at,
            timeframe=timeframe if kind == "bars" else None,
        )  # fmt: skip
    finally:
        await backend.close()


def _known_at(settings: StoreSettings, value: datetime | None) -> datetime | None:
    """``--as-known-at`` in UTC, within the history kept (else exit 2, saying so)."""
    from market_data_store.exceptions import HistoryUnavailableError  # noqa: PLC0415
    from market_data_store.read.query import check_known_at  # noqa: PLC0415

    try:
        return check_known_at(_utc(value), settings.history_retention_days)
    except HistoryUnavailableError as exc:
        raise _fail(f"--as-known-at: {exc}", 2) from None


@app.command()
def revisions(
    symbol: str,
    kind: Annotated[str, typer.Option(help="bars, trades or quotes")] = "bars",
    timeframe: Annotated[
        str | None, typer.Option("--timeframe", "-f", help="Bars: only this timeframe")
    ] = None,
    start: Annotated[datetime | None, typer.Option(help="UTC; default: epoch")] = None,
    end: Annotated[datetime | None, typer.Option(help="UTC; default: now")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000)] = 1000,
    output_format: Annotated[
        str, typer.Option("--format", help="table, json (NDJSON), csv, arrow or parquet")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout)")
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Which records of SYMBOL were revised, when and why: every version kept (the current
    one and those it replaced), with when the store learned it (ingested_at), when a newer
    one replaced it (superseded_at), and the writer's as_of, revision and reason."""
    output_format = output_format.lower()
    if output_format not in {"table", "json", "ndjson", "csv", "arrow", "parquet"}:
        raise _fail(f"unknown --format {output_format!r}: table, json, csv, arrow or parquet", 2)
    if kind not in {"bars", "trades", "quotes"}:
        raise _fail(f"unknown --kind {kind!r}: bars, trades or quotes", 2)
    settings = _settings(database_url)
    begin = _utc(start) or datetime(1970, 1, 1, tzinfo=UTC)
    finish = _utc(end) or datetime.now(UTC)
    table = _run(_revisions(settings, kind, symbol, timeframe, begin, finish, limit), settings)
    if output_format != "table":
        _write_table(table, output_format, output)
        return
    _print_revisions(table, f"{symbol} {kind}")


async def _revisions(
    settings: StoreSettings,
    kind: str,
    symbol: str,
    timeframe: str | None,
    start: datetime,
    end: datetime,
    limit: int,
) -> Any:
    from market_data_store.columnar import Kind  # noqa: PLC0415
    from market_data_store.store import make_backend  # noqa: PLC0415

    backend: Any = make_backend(settings.database)
    await backend.open()
    try:
        return await backend.revisions(
            Kind(kind), symbol, start, end, timeframe=timeframe, limit=limit
        )
    finally:
        await backend.close()


def _print_revisions(table: Any, title: str) -> None:
    """The versions as a table that fits a terminal: the record's time and main values,
    its version and reason, when the store learned it and when it was replaced."""
    from rich.table import Table  # noqa: PLC0415

    from market_data_core.columns import TIME, Kind, to_models  # noqa: PLC0415

    kind = Kind(title.rsplit(" ", 1)[-1])
    models = to_models(table.drop_columns(["ingested_at", "superseded_at"]), kind)
    learned = _times(table.column("ingested_at"))
    replaced = _times(table.column("superseded_at"))
    values = {Kind.BARS: ("close",), Kind.TRADES: ("price",), Kind.QUOTES: ("bid", "ask")}[kind]
    heading = f"{title} (as_of and every field: --format json)"
    view = Table(title=heading)
    view.add_column(TIME[kind], no_wrap=True)
    for name in values:
        view.add_column(name, no_wrap=True, justify="right")
    view.add_column("rev", no_wrap=True, justify="right")
    view.add_column("reason", no_wrap=True)
    view.add_column("learned", no_wrap=True)
    view.add_column("replaced", no_wrap=True)
    rows = []
    for model, at, until in zip(models, learned, replaced, strict=True):
        cells = [_cell(getattr(model, c)) for c in (TIME[kind], *values, "revision", "reason")]
        rows.append((cells, at or "", until or "current"))
        view.add_row(*cells, at, until or "current")
    names = [TIME[kind], *values, "rev", "reason", "learned", "replaced"]
    columns = {
        name: [row[i] for row in ([*c, a, u] for c, a, u in rows)] for i, name in enumerate(names)
    }
    if _table_width(columns) <= out.width:
        out.print(view)  # every cell whole on one line
        return
    # too narrow for a row a version: a version a block, nothing cut (times are whole)
    out.print(heading, markup=False, highlight=False)
    for cells, at, until in rows:
        time_, *shown, revision, reason = cells
        figures = "  ".join(f"{name} {value}" for name, value in zip(values, shown, strict=True))
        said = f"  {reason}" if reason else ""
        out.print(f"{time_}  {figures}  rev {revision}{said}", markup=False, highlight=False)
        out.print(f"  learned {at}, replaced {until}", markup=False, highlight=False)


def _times(column: Any) -> list[str | None]:
    import pyarrow as pa  # noqa: PLC0415

    from market_data_core import from_ns  # noqa: PLC0415

    nanos = column.cast(pa.int64()).to_pylist()
    return [None if n is None else _cell(from_ns(n)) for n in nanos]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):  # UTC: no offset, a space, the digits it has
        return value.isoformat(" ").removesuffix("+00:00")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _write_table(table: Any, output_format: str, output: Path | None) -> None:
    """``table`` as NDJSON, CSV, an Arrow IPC stream or Parquet, to ``output`` or stdout
    (timestamps to the nanosecond: ISO 8601 with nine digits in NDJSON when needed)."""
    import json  # noqa: PLC0415

    if output_format in {"json", "ndjson"}:
        lines = (json.dumps(row) for row in _json_rows(table))
        data = "".join(line + "\n" for line in lines).encode()
    else:
        from market_data_store.columnar import encode  # noqa: PLC0415

        data = encode(table, output_format)
    if output is not None:
        output.write_bytes(data)
        out.print(f"wrote {table.num_rows} rows to {output}")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _json_rows(table: Any) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON values, timestamps exact (ISO 8601, UTC)."""
    import pyarrow as pa  # noqa: PLC0415

    from market_data_core import from_ns  # noqa: PLC0415

    columns: dict[str, list[Any]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_timestamp(column.type):
            nanos = column.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_pylist()
            columns[name] = [
                None if n is None else from_ns(n).isoformat().replace("+00:00", "Z") for n in nanos
            ]
        else:
            columns[name] = column.to_pylist()
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


async def _query(
    settings: StoreSettings,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    limit: int | None,
    as_known_at: datetime | None = None,
) -> list[Any]:
    from market_data_store.backends.base import complete_page  # noqa: PLC0415
    from market_data_store.store import make_backend  # noqa: PLC0415

    backend = make_backend(settings.database)
    await backend.open()
    try:
        if limit is not None:
            return await backend.query_bars(
                symbol, timeframe, start, end, limit=limit, as_known_at=as_known_at
            )
        bars: list[Any] = []
        cursor: datetime | None = start
        while cursor is not None:
            page = await backend.query_bars(
                symbol, timeframe, cursor, end, limit=10_000, as_known_at=as_known_at
            )
            kept, cursor = complete_page(page, 10_000)
            bars.extend(kept)
        return bars
    finally:
        await backend.close()


def _modified(path: Path) -> datetime:
    """A file's modification time, to the nanosecond: the default version of its rows."""
    from market_data_core import from_ns  # noqa: PLC0415

    return from_ns(path.stat().st_mtime_ns)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@app.command()
def export(
    symbol: Annotated[str | None, typer.Argument(help="one symbol; a dataset: all")] = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="a directory: a Parquet dataset; .ndjson, .jsonl or .csv: one symbol's bars",
        ),
    ] = Path("market-data-export"),
    timeframe: Annotated[str, typer.Option("--timeframe", "-f")] = "1m",
    start: Annotated[datetime | None, typer.Option(help="UTC; default: epoch")] = None,
    end: Annotated[datetime | None, typer.Option(help="UTC; default: now")] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", "-k", help="a dataset's kinds: bars, trades, quotes (all)"),
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Export to a partitioned Parquet dataset (the default), brought up to date on every
    run: kind=/symbol=/date= directories, Hive's layout, read as it is by DuckDB, polars and
    pyarrow; only the partitions that changed since the last export are rewritten. To a
    file (.ndjson, .jsonl or .csv): every bar of SYMBOL in [start, end), readable again by
    `mds ingest`."""
    settings = _settings(database_url)
    if output.suffix.lower() not in {".ndjson", ".jsonl", ".csv"}:
        _export_dataset(settings, output, symbol, kind)
        return
    if symbol is None:
        raise _fail(f"{output}: a file holds one symbol's bars: give SYMBOL", 2)
    from market_data_store.files import write_bars  # noqa: PLC0415

    begin = _utc(start) or datetime(1970, 1, 1, tzinfo=UTC)
    finish = _utc(end) or datetime.now(UTC)
    bars = _run(_query(settings, symbol, timeframe, begin, finish, None), settings)
    write_bars(output, bars)
    out.print(f"wrote {len(bars)} {symbol} {timeframe} bars to {output}")


def _export_dataset(
    settings: StoreSettings, output: Path, symbol: str | None, kinds: list[str] | None
) -> None:
    from market_data_store.exceptions import StoreError  # noqa: PLC0415
    from market_data_store.read.export import export_dataset  # noqa: PLC0415
    from market_data_store.read.query import READ_KINDS  # noqa: PLC0415

    if output.exists() and not output.is_dir():
        raise _fail(f"{output}: not a directory (a dataset) nor .ndjson, .jsonl or .csv", 2)
    chosen = kinds or [str(k) for k in READ_KINDS]
    unknown = [k for k in chosen if k not in {str(r) for r in READ_KINDS}]
    if unknown:
        raise _fail(f"--kind {unknown[0]!r}: one of bars, trades, quotes", 2)
    try:
        report = export_dataset(
            settings.database.secret(), output, kinds=chosen,
            symbols=None if symbol is None else [symbol],
        )  # fmt: skip
    except StoreError as exc:
        raise _fail(str(exc)) from None
    out.print(f"{output}: {report}")


@app.command()
def health(
    url: Annotated[
        str, typer.Option(envvar="MDS_URL", show_envvar=True, help="the service's base URL")
    ] = "http://127.0.0.1:8080",
    timeout: float = 5.0,
) -> None:
    """Ask a running service's /readyz; exit 1 unless healthy or degraded."""
    import httpx  # noqa: PLC0415
    from pydantic import ValidationError  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from market_data_core import HealthStatus  # noqa: PLC0415

    try:
        response = httpx.get(f"{url.rstrip('/')}/readyz", timeout=timeout)
        status = HealthStatus.model_validate_json(response.content)
    except (httpx.HTTPError, ValidationError) as exc:
        raise _fail(f"{url}: {type(exc).__name__}: {exc}") from None
    table = Table(
        "component",
        "state",
        "required",
        "details",
        title=f"{status.service} {status.version}: {status.state}",
    )
    for c in status.components:
        table.add_row(
            c.name, str(c.state), "yes" if c.required else "no", json.dumps(dict(c.details))
        )
    out.print(table)
    if response.status_code >= 500:
        raise typer.Exit(1)


@app.command()
def jobs(
    database_url: DatabaseOption = None,
    job_name: Annotated[str | None, typer.Option("--job", help="only runs of this job")] = None,
    stuck_after: Annotated[
        float | None, typer.Option(help="only running jobs silent this many seconds")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """List recent job runs (or the stuck ones)."""
    from rich.table import Table  # noqa: PLC0415

    settings = _settings(database_url)
    runs = _run(_jobs(settings, job_name, stuck_after, limit), settings)
    table = Table(
        "id", "job", "provider", "mode", "status", "rows", "failed", "started", "heartbeat"
    )
    for run in runs:
        started, beat = f"{run.started_at:%Y-%m-%d %H:%M:%S}", f"{run.heartbeat_at:%H:%M:%S}"
        counts = (str(run.rows_written), str(run.rows_failed))
        table.add_row(
            run.id[:8], run.job_name, run.provider, run.mode, run.status, *counts, started, beat
        )
    out.print(table)


async def _jobs(
    settings: StoreSettings, job_name: str | None, stuck_after: float | None, limit: int
) -> list[Any]:
    from datetime import timedelta  # noqa: PLC0415

    from market_data_store.jobs import JobRunTracker  # noqa: PLC0415
    from market_data_store.store import make_backend  # noqa: PLC0415

    backend = make_backend(settings.database)
    await backend.open()
    try:
        if stuck_after is not None:
            return await JobRunTracker(backend).stuck(timedelta(seconds=stuck_after))
        return await backend.recent_job_runs(limit, job_name)
    finally:
        await backend.close()


@app.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
    ] = None,
) -> None:
    """Print the service's OpenAPI spec (committed as docs/openapi/market-data-store.json)."""
    from market_data_store.service.openapi import spec_text  # noqa: PLC0415

    text = spec_text()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")


@dlq_app.command("list")
def dlq_list(
    path: Annotated[Path, typer.Option(envvar="MDS_DEAD_LETTER_PATH", show_envvar=True)] = Path(
        "./market_data.dlq.ndjson"
    ),
) -> None:
    """Count the dead-lettered batches and records."""
    from market_data_store.dlq import FileDeadLetterStore  # noqa: PLC0415

    out.print(f"{path}: {_run_async(FileDeadLetterStore(path).count())} dead-lettered batches")


@dlq_app.command("replay")
def dlq_replay(
    path: Annotated[Path, typer.Option(envvar="MDS_DEAD_LETTER_PATH", show_envvar=True)] = Path(
        "./market_data.dlq.ndjson"
    ),
    database_url: DatabaseOption = None,
) -> None:
    """Write the dead-lettered batches again; those written are removed from the file."""
    settings = _settings(database_url, dead_letter_path=str(path) + ".replay")
    result = _run(_replay(settings, path), settings)
    out.print(
        f"replayed {result.replayed} batches ({result.records} records) from {path}; "
        f"{result.failed} still failing, {result.corrupt} unreadable lines left in place"
    )
    if result.failed or result.corrupt:
        raise typer.Exit(1)


async def _replay(settings: StoreSettings, path: Path) -> ReplayResult:
    from market_data_store.dlq import FileDeadLetterStore  # noqa: PLC0415
    from market_data_store.store import make_backend  # noqa: PLC0415

    backend = make_backend(settings.database)
    await backend.open()
    try:
        return await FileDeadLetterStore(path).replay(backend.write)
    finally:
        await backend.close()


if __name__ == "__main__":  # pragma: no cover
    app()

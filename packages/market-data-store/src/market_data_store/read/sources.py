"""Where a read's batches come from: an SQLite file, PostgreSQL, or the store's HTTP service.

Every source answers ``batches(query)``: Arrow record batches of core's schema of the
query's kind, in the query's order, exact to the nanosecond, a bounded number of rows at a
time, so a range larger than memory streams. Each call opens its own connection and closes
it when the iteration ends (or is dropped), so a source can be shared between threads.

- SQLite: the file, read with ``sqlite3`` (WAL: reads never wait for the writer).
- PostgreSQL: ADBC's driver (``pip install 'market-data-store[postgres]'``), which fetches a
  query through binary ``COPY`` straight into Arrow columns: no Python object per row.
- HTTP: the service's ``GET /v1/read/{kind}``, an Arrow IPC stream read as it arrives.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import pyarrow as pa

from market_data_core.columns import Kind
from market_data_core.timestamps import from_ns
from market_data_store.backends._layout import from_store, from_store_arrow
from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import (
    BackendError,
    ReadError,
    StoreConfigurationError,
    StoreError,
)
from market_data_store.read.query import MAX_NS, MIN_NS, ReadQuery

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpSource", "PostgresSource", "Source", "SqliteSource", "open_source"]

BATCH_ROWS: Final = 65_536
"""Rows per batch from SQLite (ADBC sizes PostgreSQL's batches itself, about 16 MB)."""


class Source(Protocol):
    """Where reads come from."""

    def batches(self, query: ReadQuery) -> Generator[pa.RecordBatch, None, None]: ...

    def describe(self) -> str:
        """What the source reads (no password)."""
        ...


def open_source(url: str | Path, *, token: str | None = None, timeout: float = 30.0) -> Source:
    """The source of ``url``: ``http(s)://`` (the store's service), ``sqlite:///path``,
    ``postgresql://...``, or a plain path to an SQLite file."""
    text = str(url)
    if text.startswith(("http://", "https://")):
        return HttpSource(text, token=token, timeout=timeout)
    if "://" not in text:
        return SqliteSource(Path(text))
    parsed = DatabaseUrl.parse(text)
    if parsed.is_sqlite:
        return SqliteSource(parsed.sqlite_path())
    return PostgresSource(parsed)


class SqliteSource:
    """An SQLite store file (it must exist: a read never creates one)."""

    def __init__(self, path: Path, *, batch_rows: int = BATCH_ROWS) -> None:
        if not path.is_file():
            msg = f"no store at {path}: no such file (write to it first, e.g. mdp run)"
            raise ReadError(msg)
        self.path = path
        self.batch_rows = batch_rows

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def batches(self, query: ReadQuery) -> Generator[pa.RecordBatch, None, None]:
        sql, params = query.sql("sqlite")
        db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            cursor = db.execute(sql, params)
            while rows := cursor.fetchmany(self.batch_rows):
                for batch in from_store(query.kind, rows, micros=True).to_batches():
                    yield query.exact(batch)
        except sqlite3.Error as exc:
            raise _failed(str(exc), self.describe(), query.kind) from None
        finally:
            db.close()

    def rows(self, sql: str, kind: Kind) -> list[tuple[Any, ...]]:
        """The rows of a query about ``kind``'s table (small: an aggregate)."""
        db = sqlite3.connect(self.path)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.Error as exc:
            raise _failed(str(exc), self.describe(), kind) from None
        finally:
            db.close()


def _failed(error: str, where: str, kind: Kind) -> StoreError:
    """A read the database failed: ``ReadError`` for a store without the kind's table,
    else ``BackendError`` (the database's trouble: the service answers 503)."""
    if "no such table" in error or f'"{kind}" does not exist' in error:
        return ReadError(f"the store at {where} has no {kind} table: run mds migrate")
    return BackendError(f"reading {kind} from {where} failed: {error}")


class PostgresSource:
    """A PostgreSQL store, read through ADBC (binary COPY into Arrow)."""

    def __init__(self, url: DatabaseUrl) -> None:
        try:
            from adbc_driver_postgresql import dbapi  # noqa: PLC0415
        except ImportError:
            msg = "reading PostgreSQL needs ADBC: pip install 'market-data-store[postgres]'"
            raise StoreConfigurationError(msg) from None
        self._dbapi = dbapi
        self._url = url

    def describe(self) -> str:
        return str(self._url)

    def _scrub(self, text: str) -> str:
        password = self._url.password
        return text.replace(password, "***") if password else text

    def _connect(self) -> Any:
        try:
            return self._dbapi.connect(self._url.asyncpg_dsn())
        except self._dbapi.Error as exc:  # the password scrubbed from what libpq says
            msg = f"cannot connect to {self.describe()}: {self._scrub(str(exc))}"
            raise BackendError(msg) from None

    def _stream(self, sql: str, kind: Kind) -> Generator[pa.RecordBatch, None, None]:
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET standard_conforming_strings = on")
                cursor.execute(sql)
                yield from cursor.fetch_record_batch()
        except (self._dbapi.Error, pa.ArrowException) as exc:
            raise _failed(self._scrub(str(exc)), self.describe(), kind) from None
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def batches(self, query: ReadQuery) -> Generator[pa.RecordBatch, None, None]:
        sql, params = query.sql("postgresql")
        assert not params, "PostgreSQL reads are written without parameters"
        for batch in self._stream(sql, query.kind):
            yield query.exact(from_store_arrow(query.kind, batch))

    def rows(self, sql: str, kind: Kind) -> list[tuple[Any, ...]]:
        """The rows of a query about ``kind``'s table (small: an aggregate)."""
        rows: list[tuple[Any, ...]] = []
        for batch in self._stream(sql, kind):
            rows += zip(*(column.to_pylist() for column in batch.columns), strict=True)
        return rows


class HttpSource:
    """The store's HTTP service: ``GET /v1/read/{kind}`` as an Arrow IPC stream."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        """``client``: an ``httpx.Client`` to send the requests with (its own base URL and
        headers; e.g. FastAPI's ``TestClient``), instead of one made here."""
        import httpx  # noqa: PLC0415

        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = client or httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout)
        )

    def describe(self) -> str:
        return self.base_url

    def close(self) -> None:
        self._client.close()

    def batches(self, query: ReadQuery) -> Generator[pa.RecordBatch, None, None]:
        with self._client.stream("GET", f"/v1/read/{query.kind}", params=params_of(query)) as r:
            if r.status_code >= 400:
                r.read()
                raise ReadError(f"{self.base_url} answered {r.status_code}: {_detail(r)}")
            body = io.BufferedReader(_Body(r.iter_bytes()), buffer_size=1 << 20)  # full reads
            reader = pa.ipc.open_stream(body)
            yield from reader


def params_of(query: ReadQuery) -> list[tuple[str, str | int | float | bool | None]]:
    """The query string of ``query`` for ``/v1/read/{kind}``."""
    params: list[tuple[str, str | int | float | bool | None]] = [("format", "arrow")]
    if query.symbols is not None:
        params += [("symbol", symbol) for symbol in query.symbols]
    if query.start_ns > MIN_NS:
        params.append(("start", from_ns(query.start_ns).isoformat()))
    if query.end_ns < MAX_NS:
        params.append(("end", from_ns(query.end_ns).isoformat()))
    for name, value in (("timeframe", query.timeframe), ("source", query.source)):
        if value is not None:
            params.append((name, value))
    if query.known_ns is not None:
        params.append(("as_known_at", from_ns(query.known_ns).isoformat()))
    return params


def _detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)


class _Body(io.RawIOBase):
    """A response body as a file, read as it arrives (what ``pa.ipc.open_stream`` takes)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

"""HTTP clients of the store service, typed with core models (httpx).

``AsyncStoreClient`` for asyncio code (pipelines), ``StoreClient`` for scripts. Writes
retry on 429 / 503 (honouring ``Retry-After``) and on connection errors, with the same
``Idempotency-Key`` on every attempt, so a retried batch is never applied twice.
``retries`` counts the attempts that were repeated.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Self, TypeVar

import httpx
import pyarrow as pa
from pydantic import BaseModel, TypeAdapter

from market_data_core import Bar, FeedbackEvent, HealthStatus, Quote, Signal, Trade
from market_data_store.backends.base import Record
from market_data_store.exceptions import StoreClientError

__all__ = ["AsyncStoreClient", "StoreClient", "StoreClientError"]

T = TypeVar("T")
_TABLE = {Bar: "bars", Trade: "trades", Quote: "quotes", Signal: "signals"}
_BARS = TypeAdapter(list[Bar])
_TRADES = TypeAdapter(list[Trade])
_QUOTES = TypeAdapter(list[Quote])
_RETRYABLE = {429, 502, 503, 504}


def _table_of(records: Sequence[Record]) -> str:
    tables = {_TABLE[type(record)] for record in records}
    if len(tables) != 1:
        msg = f"a batch must hold one kind of record, got {sorted(tables)}"
        raise StoreClientError(msg)
    return tables.pop()


def _payload(records: Sequence[BaseModel]) -> bytes:
    return b"[" + b",".join(r.model_dump_json().encode() for r in records) + b"]"


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail", body) if isinstance(body, dict) else body
    msg = f"{response.request.method} {response.request.url.path}: {response.status_code} {detail}"
    raise StoreClientError(msg, status=response.status_code, body=body)


@dataclass(frozen=True, slots=True)
class _WriteRequest:
    url: str
    body: bytes
    headers: dict[str, str]


def _write_request(records: Sequence[Record], key: str | None) -> _WriteRequest:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex, "Content-Type": "application/json"}
    return _WriteRequest(f"/v1/{_table_of(records)}", _payload(records), headers)


ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _arrow_request(table: pa.Table, kind: str | None, key: str | None) -> _WriteRequest:
    """An Arrow IPC stream of ``table`` to its kind's ingest route (told by its columns
    when ``kind`` is None)."""
    from market_data_store.columnar import Kind, kind_of  # noqa: PLC0415

    found = Kind(kind) if kind is not None else kind_of(table)
    if found is None:
        msg = f"cannot tell which kind of records the columns {table.column_names} hold"
        raise StoreClientError(msg)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    headers = {"Idempotency-Key": key or uuid.uuid4().hex, "Content-Type": ARROW_STREAM}
    return _WriteRequest(f"/v1/{found}", sink.getvalue().to_pybytes(), headers)


def _accepted(response: httpx.Response | None) -> int | None:
    """The accepted count of a final answer; ``None`` when the request should be retried."""
    if response is None or response.status_code in _RETRYABLE:
        return None
    _raise_for(response)
    return int(response.json()["accepted"])


def _gave_up(attempts: int, response: httpx.Response | None) -> StoreClientError:
    status = response.status_code if response is not None else None
    msg = f"store unavailable after {attempts} attempts (last status {status})"
    return StoreClientError(msg, status=status)


def _bars_params(
    symbol: str,
    timeframe: str,
    cursor: str,
    end: datetime,
    limit: int,
    as_known_at: datetime | None = None,
) -> dict[str, str | int]:
    params: dict[str, str | int] = {
        "symbol": symbol,
        "timeframe": timeframe,
        "limit": limit,
        "start": cursor,
        "end": end.isoformat(),
    }
    if as_known_at is not None:
        params["as_known_at"] = as_known_at.isoformat()
    return params


def _page(response: httpx.Response) -> tuple[list[Bar], str | None]:
    _raise_for(response)
    page = response.json()
    return _BARS.validate_python(page["items"]), page["next_start"]


def _range_params(
    symbol: str, start: datetime, end: datetime, limit: int, as_known_at: datetime | None
) -> dict[str, str | int]:
    params: dict[str, str | int] = {
        "symbol": symbol, "start": start.isoformat(), "end": end.isoformat(), "limit": limit
    }  # fmt: skip
    if as_known_at is not None:
        params["as_known_at"] = as_known_at.isoformat()
    return params


def _delay(response: httpx.Response | None, attempt: int) -> float:
    header = response.headers.get("retry-after") if response is not None else None
    if header is not None and header.replace(".", "", 1).isdigit():
        return min(float(header), 30.0)
    return float(min(0.1 * 2**attempt, 5.0))


class AsyncStoreClient:
    """``async with AsyncStoreClient("http://127.0.0.1:8080") as client: ...``"""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, attempts: int = 8, token: str | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, headers=headers)
        self.attempts = attempts
        self.retries = 0
        """Write attempts repeated after a 429/502/503/504 or a connection error."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def write(self, records: Sequence[Record], *, idempotency_key: str | None = None) -> int:
        """Send one batch of one kind; returns how many the service accepted."""
        if not records:
            return 0
        return await self._send(_write_request(records, idempotency_key))

    async def write_arrow(
        self, table: pa.Table, kind: str | None = None, *, idempotency_key: str | None = None
    ) -> int:
        """Send an Arrow table of one kind as an Arrow IPC stream (no JSON, no model per
        row on either side); returns how many rows the service accepted. Retries like
        ``write``, with the same idempotency key."""
        if table.num_rows == 0:
            return 0
        return await self._send(_arrow_request(table, kind, idempotency_key))

    async def _send(self, request: _WriteRequest) -> int:
        response: httpx.Response | None = None
        for attempt in range(self.attempts):
            try:
                response = await self._http.post(
                    request.url, content=request.body, headers=request.headers
                )
            except httpx.TransportError:
                response = None
            if (accepted := _accepted(response)) is not None:
                return accepted
            if attempt + 1 < self.attempts:
                self.retries += 1
            await asyncio.sleep(_delay(response, attempt))
        raise _gave_up(self.attempts, response)

    async def bars(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Bar]:
        """Every bar in [start, end), following the pages; ``as_known_at``: as the store
        knew them at that time."""
        bars: list[Bar] = []
        cursor: str | None = start.isoformat()
        while cursor is not None:
            params = _bars_params(symbol, timeframe, cursor, end, limit, as_known_at)
            items, cursor = _page(await self._http.get("/v1/bars", params=params))
            bars.extend(items)
        return bars

    async def latest_bars(self, timeframe: str) -> list[Bar]:
        return await self._get("/v1/bars/latest", _BARS, {"timeframe": timeframe})

    async def _get(
        self, path: str, adapter: TypeAdapter[list[T]], params: dict[str, str | int]
    ) -> list[T]:
        response = await self._http.get(path, params=params)
        _raise_for(response)
        return adapter.validate_json(response.content)

    async def trades(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Trade]:
        params = _range_params(symbol, start, end, limit, as_known_at)
        return await self._get("/v1/trades", _TRADES, params)

    async def quotes(
        self,
        symbol: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Quote]:
        params = _range_params(symbol, start, end, limit, as_known_at)
        return await self._get("/v1/quotes", _QUOTES, params)

    async def feedback(self) -> FeedbackEvent | None:
        response = await self._http.get("/v1/feedback")
        if response.status_code == 404:
            return None
        _raise_for(response)
        return FeedbackEvent.model_validate_json(response.content)

    async def health(self) -> HealthStatus:
        """The service's readiness (also when it answers 503)."""
        response = await self._http.get("/readyz")
        if response.status_code not in {200, 503}:
            _raise_for(response)
        return HealthStatus.model_validate_json(response.content)


class StoreClient:
    """The blocking twin of ``AsyncStoreClient`` (for scripts and notebooks)."""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, attempts: int = 8, token: str | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)
        self.attempts = attempts
        self.retries = 0
        """Write attempts repeated after a 429/502/503/504 or a connection error."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def write(self, records: Sequence[Record], *, idempotency_key: str | None = None) -> int:
        if not records:
            return 0
        return self._send(_write_request(records, idempotency_key))

    def write_arrow(
        self, table: pa.Table, kind: str | None = None, *, idempotency_key: str | None = None
    ) -> int:
        """See ``AsyncStoreClient.write_arrow``."""
        if table.num_rows == 0:
            return 0
        return self._send(_arrow_request(table, kind, idempotency_key))

    def _send(self, request: _WriteRequest) -> int:
        response: httpx.Response | None = None
        for attempt in range(self.attempts):
            try:
                response = self._http.post(
                    request.url, content=request.body, headers=request.headers
                )
            except httpx.TransportError:
                response = None
            if (accepted := _accepted(response)) is not None:
                return accepted
            if attempt + 1 < self.attempts:
                self.retries += 1
            time.sleep(_delay(response, attempt))
        raise _gave_up(self.attempts, response)

    def bars(
        self,
        symbol: str,
        timeframe: str,
        start: datetime,
        end: datetime,
        *,
        limit: int = 1000,
        as_known_at: datetime | None = None,
    ) -> list[Bar]:
        bars: list[Bar] = []
        cursor: str | None = start.isoformat()
        while cursor is not None:
            params = _bars_params(symbol, timeframe, cursor, end, limit, as_known_at)
            items, cursor = _page(self._http.get("/v1/bars", params=params))
            bars.extend(items)
        return bars

    def health(self) -> HealthStatus:
        response = self._http.get("/readyz")
        if response.status_code not in {200, 503}:
            _raise_for(response)
        return HealthStatus.model_validate_json(response.content)

"""Read routes: bars (paged), latest bars, trades, quotes, revisions, freshness.

Bars, trades and quotes answer JSON (the default) or, with ``format=arrow|parquet|csv``,
an Arrow IPC stream, a Parquet file or CSV of the ``columnar`` schema (CSV writes a trade's
conditions as JSON text). A page of bars in another format than JSON gives the next page's
start in the ``X-Next-Start`` header (absent on the last page). ``as_known_at`` reads the
versions the store held at that time (a backtest without look-ahead) instead of the
current ones; ``/v1/revisions/{kind}`` lists every version kept, when the store learned it
and why it was written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from market_data_core import (
    Bar,
    Quote,
    RangeDatetime,
    TextDatetime,
    Timeframe,
    TimeframeError,
    Trade,
    from_ns,
)
from market_data_core.columns import to_models
from market_data_core.serving import strict_json_route
from market_data_store.backends.base import complete_page
from market_data_store.columnar import Kind, encode
from market_data_store.service.deps import ServiceState, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["query"], route_class=strict_json_route())

Symbol = Annotated[
    str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9^][A-Za-z0-9._:/=^+\-]*$")
]
Limit = Annotated[int, Query(ge=1, le=10_000)]
RangeTime = RangeDatetime
"""A bound of a time range: any aware time written as such (never a number), clamped into
the range timestamps can have (``0001-01-01``...``9999-12-31`` reads as "everything")."""


Format = Annotated[Literal["json", "arrow", "parquet", "csv"], Query()]
KnownAt = Annotated[
    TextDatetime | None,
    Query(
        description=(
            "Read the versions the store held at this time (UTC, with an offset) instead of "
            "the current ones; within the history kept (MDS_HISTORY_RETENTION_DAYS)."
        )
    ),
]
MEDIA = {
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv",
}
_FORMATS = {
    status: {"content": {media: {"schema": {"type": "string", "format": "binary"}}
                         for media in MEDIA.values()}}
    for status in (200,)
}  # fmt: skip


def _encode(table: pa.Table, form: str, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(table, form), media_type=MEDIA[form], headers=headers)


async def _table(
    state: ServiceState, kind: Kind, symbol: str, start: datetime, end: datetime, limit: int,
    form: str, *, timeframe: str | None = None, source: str | None = None,
    as_known_at: datetime | None = None,
) -> Response:  # fmt: skip
    table = await state.store.query_table(
        kind, symbol, start, end, limit=limit, timeframe=timeframe, source=source,
        as_known_at=as_known_at,
    )  # fmt: skip
    headers = {}
    if kind is Kind.BARS and table.num_rows >= limit:  # the paging of complete_page
        starts = table.column("start")
        last = pc.max(starts)
        complete = table.filter(pc.less(starts, last))
        if complete.num_rows:
            table, after = complete, last.as_py()
        else:
            from datetime import timedelta  # noqa: PLC0415

            after = last.as_py() + timedelta(microseconds=1)
        headers["X-Next-Start"] = after.isoformat()
    return _encode(table, form, headers)


class BarPage(BaseModel):
    items: list[Bar]
    next_start: datetime | None = None
    """Pass as ``start`` to get the next page; ``None`` on the last page."""


class FreshnessItem(BaseModel):
    table: str
    symbol: str
    latest: datetime
    rows: int


def _timeframe(text: str) -> str:
    """The timeframe named by a query parameter; a 422 that does not echo the input."""
    try:
        return str(Timeframe.parse(text))
    except TimeframeError as exc:
        error = {
            "loc": ("query", "timeframe"),
            "msg": "not a timeframe: a positive count and a unit s, m, h or d, such as 1m",
            "type": "timeframe",
        }
        raise RequestValidationError([error]) from exc


@router.get(
    "/bars",
    response_model=BarPage,
    summary="Bars of a symbol in [start, end), paged",
    responses=_FORMATS,  # type: ignore[arg-type]
)
async def bars(
    state: State,
    symbol: Symbol,
    timeframe: Annotated[str, Query(max_length=8, examples=["1m"])],
    start: RangeTime,
    end: RangeTime,
    source: Annotated[str | None, Query(max_length=128)] = None,
    limit: Limit = 1000,
    format: Format = "json",
    as_known_at: KnownAt = None,
) -> BarPage | Response:
    if format != "json":
        return await _table(
            state, Kind.BARS, symbol, start, end, limit, format,
            timeframe=_timeframe(timeframe), source=source, as_known_at=as_known_at,
        )  # fmt: skip
    page = await state.store.query_bars(
        symbol, _timeframe(timeframe), start, end, source=source, limit=limit,
        as_known_at=as_known_at,
    )  # fmt: skip
    items, after = complete_page(page, limit)
    return BarPage(items=items, next_start=after)


@router.get("/bars/latest", response_model=list[Bar], summary="Newest bar of each symbol")
async def latest_bars(
    state: State,
    timeframe: Annotated[str, Query(max_length=8, examples=["1m"])],
    symbols: Annotated[list[str] | None, Query(max_length=500)] = None,
) -> list[Bar]:
    return await state.store.latest_bars(_timeframe(timeframe), symbols)


@router.get(
    "/trades",
    response_model=list[Trade],
    summary="Trades of a symbol in [start, end)",
    responses=_FORMATS,  # type: ignore[arg-type]
)
async def trades(
    state: State,
    symbol: Symbol,
    start: RangeTime,
    end: RangeTime,
    limit: Limit = 1000,
    format: Format = "json",
    as_known_at: KnownAt = None,
) -> list[Trade] | Response:
    if format != "json":
        return await _table(
            state, Kind.TRADES, symbol, start, end, limit, format, as_known_at=as_known_at
        )
    return await state.store.query_trades(symbol, start, end, limit=limit, as_known_at=as_known_at)


@router.get(
    "/quotes",
    response_model=list[Quote],
    summary="Quotes of a symbol in [start, end)",
    responses=_FORMATS,  # type: ignore[arg-type]
)
async def quotes(
    state: State,
    symbol: Symbol,
    start: RangeTime,
    end: RangeTime,
    limit: Limit = 1000,
    format: Format = "json",
    as_known_at: KnownAt = None,
) -> list[Quote] | Response:
    if format != "json":
        return await _table(
            state, Kind.QUOTES, symbol, start, end, limit, format, as_known_at=as_known_at
        )
    return await state.store.query_quotes(symbol, start, end, limit=limit, as_known_at=as_known_at)


@router.get(
    "/revisions/{kind}",
    summary="Every version kept of the records in [start, end): when learned, and why",
    responses=_FORMATS,  # type: ignore[arg-type]
)
async def revisions(
    state: State,
    kind: Literal["bars", "trades", "quotes"],
    symbol: Symbol,
    start: RangeTime,
    end: RangeTime,
    timeframe: Annotated[str | None, Query(max_length=8, examples=["1m"])] = None,
    source: Annotated[str | None, Query(max_length=128)] = None,
    limit: Limit = 1000,
    format: Format = "json",
) -> Response:
    """The current version of each record and those it replaced (within the history
    kept), ordered by key and ``ingested_at``: ``as_of``, ``revision`` and ``reason`` say
    what the writer knew and why it wrote it, ``ingested_at`` when the store learned it,
    ``superseded_at`` when a newer version replaced it (null: current)."""
    table = await state.store.revisions(
        kind, symbol, start, end, limit=limit, source=source,
        timeframe=None if timeframe is None else _timeframe(timeframe),
    )  # fmt: skip
    if format != "json":
        return _encode(table, format)

    models = to_models(table.drop_columns(["ingested_at", "superseded_at"]), kind)
    learned = table.column("ingested_at").cast(pa.int64()).to_pylist()
    replaced = table.column("superseded_at").cast(pa.int64()).to_pylist()

    items = [
        {
            **model.model_dump(mode="json"),
            "ingested_at": from_ns(at).isoformat().replace("+00:00", "Z"),
            "superseded_at": None
            if end_ is None
            else from_ns(end_).isoformat().replace("+00:00", "Z"),
        }
        for model, at, end_ in zip(models, learned, replaced, strict=True)
    ]
    return JSONResponse(items)


@router.get("/freshness", response_model=list[FreshnessItem], summary="Newest data per symbol")
async def freshness(state: State) -> list[FreshnessItem]:
    return [
        FreshnessItem(table=f.table, symbol=f.symbol, latest=f.latest, rows=f.rows)
        for f in await state.store.freshness()
    ]

"""Read routes: bars (paged), latest bars, trades, quotes, freshness.

Bars, trades and quotes answer JSON (the default) or, with ``format=arrow|parquet|csv``,
an Arrow IPC stream, a Parquet file or CSV of the ``columnar`` schema (CSV writes a trade's
conditions as JSON text). A page of bars in another format than JSON gives the next page's
start in the ``X-Next-Start`` header (absent on the last page).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, AwareDatetime, BaseModel

from market_data_core import Bar, Quote, Timeframe, TimeframeError, Trade, clamp_utc
from market_data_store.backends.base import complete_page
from market_data_store.columnar import Kind, encode
from market_data_store.service.deps import ServiceState, State

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["query"])

Symbol = Annotated[
    str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9^][A-Za-z0-9._:/=^+\-]*$")
]
Limit = Annotated[int, Query(ge=1, le=10_000)]
RangeTime = Annotated[AwareDatetime, AfterValidator(clamp_utc)]
"""A bound of a time range: any aware time, clamped into the range timestamps can have
(``0001-01-01``...``9999-12-31`` reads as "everything")."""


Format = Annotated[Literal["json", "arrow", "parquet", "csv"], Query()]
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
    form: str, **options: str | None,
) -> Response:  # fmt: skip
    table = await state.store.query_table(kind, symbol, start, end, limit=limit, **options)
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
) -> BarPage | Response:
    if format != "json":
        options = {"timeframe": _timeframe(timeframe), "source": source}
        return await _table(state, Kind.BARS, symbol, start, end, limit, format, **options)
    page = await state.store.query_bars(
        symbol, _timeframe(timeframe), start, end, source=source, limit=limit
    )
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
) -> list[Trade] | Response:
    if format != "json":
        return await _table(state, Kind.TRADES, symbol, start, end, limit, format)
    return await state.store.query_trades(symbol, start, end, limit=limit)


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
) -> list[Quote] | Response:
    if format != "json":
        return await _table(state, Kind.QUOTES, symbol, start, end, limit, format)
    return await state.store.query_quotes(symbol, start, end, limit=limit)


@router.get("/freshness", response_model=list[FreshnessItem], summary="Newest data per symbol")
async def freshness(state: State) -> list[FreshnessItem]:
    return [
        FreshnessItem(table=f.table, symbol=f.symbol, latest=f.latest, rows=f.rows)
        for f in await state.store.freshness()
    ]

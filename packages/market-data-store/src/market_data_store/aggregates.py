"""Higher-timeframe bars rolled up from stored base bars (the store's aggregates).

``refresh_aggregates`` recomputes, for every symbol with base bars in a time range, the
bars of each target timeframe: open of the first base bar, high max, low min, close of the
last, volume and trade count summed (unknown when a base bar's count is), vwap
volume-weighted (unknown when a base bar with volume has none; the same rules as the
pipeline's ``resample_ohlc``). It writes them with the same
idempotent upsert as any bar, under the base bars' source, so refreshing twice changes
nothing and a refresh after late base bars corrects the rollups. Only whole target windows
made of base bars are touched: the range is widened to window boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from market_data_core import Bar, Timeframe
from market_data_store.backends.base import Backend, complete_page
from market_data_store.exceptions import StoreConfigurationError

__all__ = ["AggregateResult", "refresh_aggregates", "roll_up"]

_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class AggregateResult:
    base: str
    target: str
    symbols: int
    bars: int


def roll_up(bars: Sequence[Bar], target: Timeframe) -> list[Bar]:
    """Bars of ``target`` from base bars of one source and symbol, in time order."""
    groups: dict[datetime, list[Bar]] = {}
    for bar in sorted(bars, key=lambda b: b.start):
        groups.setdefault(target.floor(bar.start), []).append(bar)
    return [_combine(start, group, target) for start, group in groups.items()]


def _combine(start: datetime, group: list[Bar], target: Timeframe) -> Bar:
    volume = sum(b.volume for b in group)
    counts = [b.trade_count for b in group]
    weighted = [(b.vwap, b.volume) for b in group if b.vwap is not None]
    unknown = any(b.vwap is None and b.volume > 0 for b in group)  # traded, price unknown
    vwap = None
    if weighted and not unknown and volume > 0:
        low, high = min(b.low for b in group), max(b.high for b in group)
        vwap = min(max(sum(p * v for p, v in weighted) / volume, low), high)
    return Bar(
        source=group[0].source,
        symbol=group[0].symbol,
        timeframe=target,
        start=start,
        open=group[0].open,
        high=max(b.high for b in group),
        low=min(b.low for b in group),
        close=group[-1].close,
        volume=volume,
        trade_count=None if None in counts else sum(c or 0 for c in counts),
        vwap=vwap,
    )


async def refresh_aggregates(
    backend: Backend,
    *,
    base: str,
    targets: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[AggregateResult]:
    """Recompute ``targets`` from ``base`` bars in [start, end) for every symbol."""
    base_tf = Timeframe.parse(base)
    target_tfs = [Timeframe.parse(t) for t in targets]
    for target in target_tfs:
        if target <= base_tf or not base_tf.divides(target):
            msg = f"cannot roll {base_tf} bars up into {target}: it must be a multiple of {base_tf}"
            raise StoreConfigurationError(msg)
    symbols = sorted({f.symbol for f in await backend.freshness() if f.table == "bars"})
    results = []
    for target in target_tfs:
        lo, hi = target.floor(start), target.ceil(end)
        written = 0
        for symbol in symbols:
            base_bars = await _all_bars(backend, symbol, str(base_tf), lo, hi)
            by_source: dict[str, list[Bar]] = {}
            for bar in base_bars:
                by_source.setdefault(bar.source, []).append(bar)
            rolled = [bar for group in by_source.values() for bar in roll_up(group, target)]
            if rolled:
                written += (await backend.write(rolled)).bars
        results.append(AggregateResult(str(base_tf), str(target), len(symbols), written))
    return results


async def _all_bars(
    backend: Backend, symbol: str, timeframe: str, start: datetime, end: datetime
) -> list[Bar]:
    bars: list[Bar] = []
    cursor: datetime | None = start
    while cursor is not None:
        page = await backend.query_bars(symbol, timeframe, cursor, end, limit=_PAGE)
        kept, cursor = complete_page(page, _PAGE)
        bars.extend(kept)
    return bars

"""Core quickstart: real USD/JPY quotes -> validated ``Quote``s -> 1-minute mid-price ``Bar``s.

Runs with nothing but market-data-core installed:

    uv run python examples/core_quickstart.py [CSV] [--timeframe 1m]

Every row is validated into a core ``Quote`` (a bad row stops the run with the file, line
and field), mid prices are bucketed with ``Timeframe.floor`` into bars (bar timestamp =
window start), every bar is validated as a core ``Bar``, and the bars are written as NDJSON
to ``--out`` (default: stdout summary only). The feedback bus shows a producer being told
to pause when a (simulated) store queue crosses its high watermark.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from market_data_core import (
    BackpressureLevel,
    Bar,
    FeedbackEvent,
    InMemoryFeedbackBus,
    Quote,
    Timeframe,
)

DEFAULT_CSV = Path(__file__).parent / "data" / "usdjpy-ticks.csv"


class BadRowError(ValueError):
    """A row that is not a valid quote, with where it is."""


def read_quotes(path: Path, symbol: str) -> Iterator[Quote]:
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                yield Quote(
                    symbol=symbol,
                    ts=datetime.fromisoformat(row["timestamp"]),
                    bid=float(row["bid"]),
                    ask=float(row["ask"]),
                )
            except (KeyError, ValueError, ValidationError) as exc:
                msg = f"{path}:{line}: invalid quote: {exc}"
                raise BadRowError(msg) from exc


def mid_bars(quotes: Iterator[Quote], timeframe: Timeframe, source: str) -> list[Bar]:
    """One bar per symbol and window: OHLC of the mid price, trade_count = quote count."""
    windows: dict[tuple[str, datetime], list[float]] = {}
    for quote in quotes:
        windows.setdefault((quote.symbol, timeframe.floor(quote.ts)), []).append(quote.mid)
    return [
        Bar(
            source=source,
            symbol=symbol,
            timeframe=timeframe,
            start=start,
            open=mids[0],
            high=max(mids),
            low=min(mids),
            close=mids[-1],
            trade_count=len(mids),
        )
        for (symbol, start), mids in sorted(windows.items())
    ]


async def feedback_demo() -> list[str]:
    """A producer follows a coordinator's feedback: full rate, then paused, then resumed."""
    lines = []
    async with InMemoryFeedbackBus(ttl=15) as bus:
        producer = bus.subscribe(name="producer")
        levels = [BackpressureLevel.OK, BackpressureLevel.HARD, BackpressureLevel.OK]
        for seq, (level, size) in enumerate(zip(levels, [10, 950, 100], strict=True), 1):
            await bus.publish(
                FeedbackEvent(
                    coordinator_id="store-demo", queue_size=size, capacity=1000, level=level,
                    ts=datetime.now().astimezone(), seq=seq,
                )
            )  # fmt: skip
        for _ in levels:
            event = await anext(aiter(producer))
            assert isinstance(event, FeedbackEvent)
            lines.append(
                f"feedback seq={event.seq} level={event.level} utilization={event.utilization:.0%}"
                f" -> producer rate x{event.level.default_scale:.1f}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--symbol", default="USD/JPY")
    parser.add_argument("--timeframe", default="1m", help="bar timeframe (1s..1d), default 1m")
    parser.add_argument("--out", type=Path, help="write the bars as NDJSON to this file")
    args = parser.parse_args(argv)
    try:
        timeframe = Timeframe.parse(args.timeframe)
        bars = mid_bars(read_quotes(args.csv, args.symbol), timeframe, "truefx")
    except (BadRowError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.write_text("".join(bar.model_dump_json() + "\n" for bar in bars))
    quotes = sum(bar.trade_count or 0 for bar in bars)
    print(f"read {quotes} quotes of {args.symbol} from {args.csv.name}")
    first, last = bars[0].start, bars[-1].start
    print(f"made {len(bars)} {timeframe} bars, {first:%Y-%m-%d %H:%M} .. {last:%H:%M} UTC")
    for bar in bars[:3]:
        ohlc = f"o={bar.open:.4f} h={bar.high:.4f} l={bar.low:.4f} c={bar.close:.4f}"
        print(f"  {bar.start:%H:%M}  {ohlc} n={bar.trade_count}")
    if args.out:
        print(f"wrote {len(bars)} bars to {args.out}")
    for line in asyncio.run(feedback_demo()):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

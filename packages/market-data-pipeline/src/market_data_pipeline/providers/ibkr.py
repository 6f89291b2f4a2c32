"""Live quotes or trades from Interactive Brokers (TWS / IB Gateway) through ``ib_async``.

Needs the ``ibkr`` extra (``pip install 'market-data-pipeline[ibkr]'``); ``ib_async`` is
imported when the provider opens, so graphs without it never need the package.

The provider subscribes with ``reqMktData`` and turns the ticker updates of
``pendingTickersEvent`` into batches every ``flush_interval`` seconds. It is live: it cannot
pause the exchange. While the rate controller is paused (``scale == 0``) it keeps only the
latest quote per symbol (conflation, counted as ``conflated``) and emits those once resumed;
trades are never conflated: they wait in a bounded buffer (``max_buffered_trades``; the
oldest are dropped and counted as ``dropped`` only past that bound).

A live feed's version time is when it received the data: every record's ``received_at``
and ``as_of`` are the wall-clock time (ns) at which ``ib_async`` handed the update over,
the one legitimate use of the wall clock for a version. IBKR gives no trade id or
sequence: ticks get their ``ordinal`` among identical ones (one
:class:`~market_data_core.columns.Ordinals` per provider).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal

import pyarrow as pa
import structlog
from pydantic import Field, TypeAdapter, ValidationError, field_validator

from market_data_core import Symbol
from market_data_core.columns import Ordinals
from market_data_core.timestamps import to_ns
from market_data_pipeline import records
from market_data_pipeline.components import Context, Emit, Params, Provider
from market_data_pipeline.providers._timestamps import stoppable_sleep

__all__ = ["IBKRContract", "IBKRParams", "IBKRProvider"]

logger = structlog.get_logger(__name__)

_DEFAULT_EXCHANGE: Final = {"STK": "SMART", "CASH": "IDEALPRO", "CRYPTO": "PAXOS"}
_TRADE_TICKS: Final = frozenset({48, 77})
"""RT Volume and RT Trade Volume ticks: one per print, with price, size and time."""

_SYMBOL: Final = TypeAdapter(Symbol)

QuoteRow = tuple[str, int, float, float, float, float, int]
"""symbol, ts (ns), bid, ask, bid size, ask size, received (ns)."""
TradeRow = tuple[str, int, float, float, int]
"""symbol, ts (ns), price, size, received (ns)."""


class IBKRContract(Params):
    """One instrument; unset fields come from the provider's defaults."""

    symbol: str
    sec_type: str | None = None
    exchange: str | None = None
    currency: str | None = None
    primary_exchange: str | None = None
    name: str | None = Field(default=None, description="Symbol in the records (default symbol).")


class IBKRParams(Params):
    host: str = "127.0.0.1"
    port: int = Field(default=7497, ge=1, le=65535)
    client_id: int = Field(default=1, ge=0)
    symbols: list[str | IBKRContract] = Field(min_length=1)
    sec_type: str = Field(default="STK", description="STK, CASH (forex pairs like EURUSD)...")
    exchange: str | None = Field(default=None, description="Default SMART (STK), IDEALPRO (CASH).")
    currency: str = "USD"
    kind: Literal["quotes", "trades"] = "quotes"
    market_data_type: int = Field(default=1, ge=1, le=4, description="1 live ... 3 delayed.")
    generic_ticks: str | None = Field(
        default=None, description="reqMktData generic ticks (default: 233 RTVolume for trades)."
    )
    flush_interval: float = Field(default=0.1, gt=0, description="Seconds between batches.")
    max_batch: int = Field(default=10_000, ge=1)
    max_buffered_quotes: int = Field(default=100_000, ge=1)
    max_buffered_trades: int = Field(default=1_000_000, ge=1)
    connect_timeout: float = Field(default=10.0, gt=0)

    @field_validator("sec_type")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    def contracts(self) -> list[IBKRContract]:
        """Every instrument with its defaults filled in."""
        out = []
        for item in self.symbols:
            spec = IBKRContract(symbol=item) if isinstance(item, str) else item
            sec_type = (spec.sec_type or self.sec_type).upper()
            out.append(
                spec.model_copy(
                    update={
                        "sec_type": sec_type,
                        "exchange": spec.exchange
                        or self.exchange
                        or _DEFAULT_EXCHANGE.get(sec_type, "SMART"),
                        "currency": spec.currency or self.currency,
                        "name": spec.name or spec.symbol,
                    }
                )
            )
        return out


class IBKRProvider(Provider[IBKRParams]):
    """Live quotes or trades from TWS / IB Gateway (ib_async); conflates quotes when paused."""

    Params = IBKRParams
    description: ClassVar[str] = "Live IBKR quotes or trades (ib_async); conflates when paused."

    ib_factory: ClassVar[Callable[[], Any] | None] = None
    """Makes the ``IB`` object (default ``ib_async.IB``); tests put a fake here."""

    def __init__(self, node_id: str, params: IBKRParams) -> None:
        super().__init__(node_id, params)
        self.contracts = params.contracts()
        names = [c.name for c in self.contracts]
        for name in names:
            try:
                _SYMBOL.validate_python(name)
            except ValidationError:
                msg = f"{name!r} is not a valid symbol for the records: give it name: <symbol>"
                raise ValueError(msg) from None
        if len(set(names)) != len(names):
            msg = "two symbols have the same name; give one of them name: <other>"
            raise ValueError(msg)
        self.ib: Any = None
        self._tickers: dict[int, str] = {}
        self._subscribed: list[Any] = []
        self._quotes: list[QuoteRow] = []
        self._latest: dict[str, QuoteRow] = {}
        self._trades: deque[TradeRow] = deque()
        self._ordinals = Ordinals()
        self.clock = time.time_ns
        """The receive time (ns since the epoch, wall clock); tests replace it."""

    def output_schema(self, port: str, given: pa.Schema | None) -> pa.Schema | None:
        return records.schema_of(self.params.kind)

    # -- connection ---------------------------------------------------------------------

    async def open(self, ctx: Context) -> None:
        await super().open(ctx)
        p = self.params
        self.ib = self._make_ib()
        await self.ib.connectAsync(p.host, p.port, clientId=p.client_id, timeout=p.connect_timeout)
        if p.market_data_type != 1:
            self.ib.reqMarketDataType(p.market_data_type)
        ticks = p.generic_ticks if p.generic_ticks is not None else self._default_ticks()
        for spec in self.contracts:
            contract = self._contract(spec)
            ticker = self.ib.reqMktData(contract, ticks, False, False)
            self._subscribed.append(contract)
            self._tickers[id(ticker)] = spec.name or spec.symbol
        self.ib.pendingTickersEvent += self.on_tickers
        logger.info("ibkr subscribed", node=self.node_id, kind=p.kind, symbols=len(self.contracts))

    def _default_ticks(self) -> str:
        return "233" if self.params.kind == "trades" else ""

    def _make_ib(self) -> Any:
        factory = type(self).ib_factory
        if factory is not None:
            return factory()
        try:
            import ib_async  # noqa: PLC0415 - the optional extra, needed only here
        except ImportError:
            msg = "the ibkr provider needs ib_async: pip install 'market-data-pipeline[ibkr]'"
            raise RuntimeError(msg) from None
        return ib_async.IB()

    @staticmethod
    def _contract(spec: IBKRContract) -> Any:
        import ib_async  # noqa: PLC0415

        if spec.sec_type == "CASH" and len(spec.symbol) == 6 and spec.symbol.isalpha():
            return ib_async.Forex(spec.symbol.upper(), exchange=spec.exchange or "IDEALPRO")
        return ib_async.Contract(
            symbol=spec.symbol,
            secType=spec.sec_type or "STK",
            exchange=spec.exchange or "SMART",
            currency=spec.currency or "USD",
            primaryExchange=spec.primary_exchange or "",
        )

    async def close(self) -> None:
        ib, self.ib = self.ib, None
        if ib is not None:
            try:
                ib.pendingTickersEvent -= self.on_tickers
                for contract in self._subscribed:
                    ib.cancelMktData(contract)
            finally:
                ib.disconnect()
        await super().close()

    # -- updates (called by ib_async on the event loop) ---------------------------------

    def paused(self) -> bool:
        return self.context.rate.scale <= 0

    def on_tickers(self, tickers: Iterable[Any]) -> None:
        """``pendingTickersEvent`` handler: buffer (or conflate) the updates."""
        received = self.clock()
        for ticker in tickers:
            name = self._tickers.get(id(ticker))
            if name is None:
                continue
            if self.params.kind == "quotes":
                self._on_quote(name, ticker, received)
            else:
                self._on_trades(name, ticker, received)

    def _on_quote(self, name: str, ticker: Any, received: int) -> None:
        row = _quote_row(name, ticker, received)
        if row is None:
            self.context.count("invalid")
            return
        if self.paused():
            self._conflate(row)
            return
        self._quotes.append(row)
        if len(self._quotes) > self.params.max_buffered_quotes:
            self._conflate_pending()

    def _on_trades(self, name: str, ticker: Any, received: int) -> None:
        for tick in getattr(ticker, "ticks", None) or ():
            if tick.tickType not in _TRADE_TICKS or not _valid(tick.price):
                continue
            size = float(tick.size) if _valid(tick.size) else 0.0
            if len(self._trades) >= self.params.max_buffered_trades:
                self._trades.popleft()
                self.context.count("dropped")
            ts = _ns(tick.time, received)
            self._trades.append((name, ts, float(tick.price), size, received))

    def _conflate(self, row: QuoteRow) -> None:
        if row[0] in self._latest:
            self.context.count("conflated")
        self._latest[row[0]] = row

    def _conflate_pending(self) -> None:
        pending, self._quotes = self._quotes, []
        for row in pending:
            self._conflate(row)

    # -- batches ------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        ctx = self.context
        while not ctx.stopping.is_set():
            await stoppable_sleep(self.params.flush_interval, ctx.stopping)
            if self.paused():
                self._conflate_pending()
                continue
            for batch in self.take():
                await ctx.rate.acquire(batch.num_rows)
                await emit(batch)
        for batch in self.take():
            await emit(batch)

    def take(self) -> list[pa.Table]:
        """Everything buffered, as batches of at most ``max_batch`` rows."""
        size = self.params.max_batch
        if self.params.kind == "quotes":
            quotes = [*self._latest.values(), *self._quotes]
            self._latest, self._quotes = {}, []
            tables = [_quotes_table(quotes[i : i + size]) for i in range(0, len(quotes), size)]
        else:
            trades = list(self._trades)
            self._trades.clear()
            tables = [_trades_table(trades[i : i + size]) for i in range(0, len(trades), size)]
        kind = records.Kind(self.params.kind)
        return [self._ordinals.assign(table, kind) for table in tables]


def _valid(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _ns(value: datetime | None, received: int) -> int:
    """An update's event time (ns); without one, when it was received."""
    if value is None:
        return received
    return to_ns(value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC))


def _quote_row(name: str, ticker: Any, received: int) -> QuoteRow | None:
    bid, ask = ticker.bid, ticker.ask
    if not (_valid(bid) and _valid(ask)) or bid > ask or bid <= 0 or ask <= 0:
        return None
    bid_size = float(ticker.bidSize) if _valid(ticker.bidSize) else 0.0
    ask_size = float(ticker.askSize) if _valid(ticker.askSize) else 0.0
    ts = _ns(ticker.time, received)
    return (name, ts, float(bid), float(ask), bid_size, ask_size, received)


def _table(
    rows: list[Any], names: tuple[str, ...], kind: records.Kind, schema: pa.Schema
) -> pa.Table:
    """Rows of ``names`` (the last one the receive time) as a checked table of ``kind``:
    the receive time is also the version time."""
    columns: dict[str, pa.Array] = {}
    for index, name in enumerate(names):
        values = [row[index] for row in rows]
        field = schema.field(name)
        if field.type == records.TIMESTAMP:
            columns[name] = pa.array(values, pa.int64()).cast(records.TIMESTAMP)
        else:
            columns[name] = pa.array(values, field.type)
    columns["as_of"] = columns["received_at"]
    return records.check(pa.table(columns), kind, source="ibkr")


def _quotes_table(rows: list[QuoteRow]) -> pa.Table:
    names = ("symbol", "ts", "bid", "ask", "bid_size", "ask_size", "received_at")
    return _table(rows, names, records.Kind.QUOTES, records.QUOTES)


def _trades_table(rows: list[TradeRow]) -> pa.Table:
    names = ("symbol", "ts", "price", "size", "received_at")
    return _table(rows, names, records.Kind.TRADES, records.TRADES)

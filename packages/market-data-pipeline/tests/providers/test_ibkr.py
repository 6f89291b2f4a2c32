import asyncio
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pyarrow as pa
import pytest

from market_data_core.testing.servers import scaled
from market_data_pipeline import records
from market_data_pipeline.exceptions import GraphError
from market_data_pipeline.graph import Graph, node
from market_data_pipeline.providers.ibkr import IBKRParams, IBKRProvider

T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


@dataclass
class FakeTick:
    time: datetime
    tickType: int  # noqa: N815 - ib_async's name
    price: float
    size: float


@dataclass(eq=False)
class FakeTicker:
    contract: Any
    time: datetime | None = None
    bid: float = math.nan
    ask: float = math.nan
    bidSize: float = math.nan  # noqa: N815
    askSize: float = math.nan  # noqa: N815
    ticks: list[FakeTick] = field(default_factory=list)


class FakeEvent:
    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def __iadd__(self, handler: Any) -> "FakeEvent":
        self.handlers.append(handler)
        return self

    def __isub__(self, handler: Any) -> "FakeEvent":
        self.handlers.remove(handler)
        return self

    def emit(self, tickers: set[FakeTicker]) -> None:
        for handler in list(self.handlers):
            handler(tickers)


class FakeIB:
    """The part of ``ib_async.IB`` the provider uses."""

    instances: ClassVar[list["FakeIB"]] = []

    def __init__(self) -> None:
        self.pendingTickersEvent = FakeEvent()
        self.connected: tuple[str, int, int] | None = None
        self.tickers: dict[str, FakeTicker] = {}
        self.generic_ticks: list[str] = []
        self.cancelled: list[Any] = []
        self.market_data_type = 1
        FakeIB.instances.append(self)

    async def connectAsync(self, host: str, port: int, clientId: int, timeout: float) -> None:  # noqa: N803, ASYNC109 - ib_async names
        self.connected = (host, port, clientId)

    def reqMarketDataType(self, kind: int) -> None:
        self.market_data_type = kind

    def reqMktData(
        self,
        contract: Any,
        genericTickList: str,  # noqa: N803
        snapshot: bool,
        regulatorySnapshot: bool,  # noqa: N803
    ) -> FakeTicker:
        ticker = FakeTicker(contract)
        name = contract.pair() if contract.secType == "CASH" else contract.symbol
        self.tickers[name] = ticker
        self.generic_ticks.append(genericTickList)
        return ticker

    def cancelMktData(self, contract: Any) -> None:
        self.cancelled.append(contract)

    def disconnect(self) -> None:
        self.connected = None

    # test helpers: what the wrapper does on market data
    def quote(self, name: str, bid: float, ask: float, second: int) -> None:
        ticker = self.tickers[name]
        ticker.bid, ticker.ask, ticker.bidSize, ticker.askSize = bid, ask, 100.0, 200.0
        ticker.time = T0 + timedelta(seconds=second)
        self.pendingTickersEvent.emit({ticker})

    def trade(self, name: str, price: float, size: float, second: int) -> None:
        ticker = self.tickers[name]
        ticker.ticks = [FakeTick(T0 + timedelta(seconds=second), 48, price, size)]
        self.pendingTickersEvent.emit({ticker})


@pytest.fixture
def fake_ib(monkeypatch: pytest.MonkeyPatch) -> type[FakeIB]:
    FakeIB.instances.clear()
    monkeypatch.setattr(IBKRProvider, "ib_factory", FakeIB)
    return FakeIB


def provider(**params: Any) -> IBKRProvider:
    defaults: dict[str, Any] = {"symbols": ["AAPL", "MSFT"], "flush_interval": 0.01}
    return IBKRProvider("ib", IBKRParams.model_validate(defaults | params))


@pytest.mark.asyncio
async def test_quotes_are_conflated_while_paused_and_the_latest_emitted_on_resume(
    fake_ib, make_context, pausable_rate, collector
) -> None:
    ib_provider = provider(kind="quotes")
    ctx = make_context("ib", rate=pausable_rate)
    await ib_provider.open(ctx)
    ib = fake_ib.instances[0]
    assert ib.connected == ("127.0.0.1", 7497, 1)
    task = asyncio.create_task(ib_provider.run(collector))
    try:
        ib.quote("AAPL", 185.0, 185.1, 0)
        await collector.wait_rows(1)
        pausable_rate.pause()
        for second in range(1, 6):
            ib.quote("AAPL", 185.0 + second, 185.1 + second, second)
        for second in range(1, 4):
            ib.quote("MSFT", 370.0 + second, 370.2 + second, second)
        await asyncio.sleep(0.05)  # several flush intervals pass while paused
        assert collector.rows == 1
        assert ctx.stats.counters["conflated"] == 4 + 2
        pausable_rate.resume()
        await collector.wait_rows(3)
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, timeout=scaled(5))
        await ib_provider.close()
    table = collector.table()
    assert records.kind_of(table) is records.Kind.QUOTES
    latest = {row["symbol"]: row for row in table.slice(1).to_pylist()}
    assert table.num_rows == 3
    assert (latest["AAPL"]["bid"], latest["AAPL"]["ask"]) == (190.0, 190.1)
    assert latest["AAPL"]["ts"] == T0 + timedelta(seconds=5)
    assert (latest["MSFT"]["bid"], latest["MSFT"]["bid_size"]) == (373.0, 100.0)
    assert ib.connected is None
    assert len(ib.cancelled) == 2
    assert ib.pendingTickersEvent.handlers == []


@pytest.mark.asyncio
async def test_trades_are_never_conflated(fake_ib, make_context, pausable_rate, collector) -> None:
    ib_provider = provider(kind="trades")
    ctx = make_context("ib", rate=pausable_rate)
    await ib_provider.open(ctx)
    ib = fake_ib.instances[0]
    assert ib.generic_ticks == ["233", "233"]
    pausable_rate.pause()
    task = asyncio.create_task(ib_provider.run(collector))
    try:
        for second in range(10):
            ib.trade("AAPL", 185.0 + second / 100, 10 + second, second)
            ib.trade("MSFT", 370.0, 1, second)
        await asyncio.sleep(0.05)
        assert collector.rows == 0
        pausable_rate.resume()
        await collector.wait_rows(20)
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, timeout=scaled(5))
        await ib_provider.close()
    table = collector.table()
    assert records.kind_of(table) is records.Kind.TRADES
    aapl = [r for r in table.to_pylist() if r["symbol"] == "AAPL"]
    assert [r["size"] for r in aapl] == [10.0 + s for s in range(10)]
    assert "conflated" not in ctx.stats.counters
    assert "dropped" not in ctx.stats.counters


@pytest.mark.asyncio
async def test_a_live_record_is_as_of_its_receive_time_and_identical_prints_get_ordinals(
    fake_ib, make_context
) -> None:
    ib_provider = provider(kind="trades")
    await ib_provider.open(make_context("ib"))
    ib = fake_ib.instances[0]
    received = iter(range(1704205800_000000001, 1704205800_000000010))
    ib_provider.clock = lambda: next(received)  # the wall clock at each update
    try:
        for _ in range(3):
            ib.trade("AAPL", 185.0, 10, 0)  # three identical prints at one instant
        (first,) = ib_provider.take()
        ib.trade("AAPL", 185.0, 10, 0)  # a fourth, in a later batch
        (second,) = ib_provider.take()
    finally:
        await ib_provider.close()
    table = pa.concat_tables([first, second])
    assert table.column("ordinal").to_pylist() == [0, 1, 2, 3]  # one counter per provider
    nanos = table.column("received_at").cast(pa.int64()).to_pylist()
    assert nanos == [1704205800_000000001 + i for i in range(4)]
    assert table.column("as_of").equals(table.column("received_at"))
    assert records.utc(table) == [T0] * 4  # the event time stays the venue's


@pytest.mark.asyncio
async def test_the_trade_buffer_is_bounded_and_counts_drops(
    fake_ib, make_context, pausable_rate, collector
) -> None:
    ib_provider = provider(kind="trades", max_buffered_trades=5)
    ctx = make_context("ib", rate=pausable_rate)
    await ib_provider.open(ctx)
    ib = fake_ib.instances[0]
    pausable_rate.pause()
    for second in range(8):
        ib.trade("AAPL", 100.0, second + 1, second)
    assert ctx.stats.counters["dropped"] == 3
    pausable_rate.resume()
    task = asyncio.create_task(ib_provider.run(collector))
    try:
        await collector.wait_rows(5)
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, timeout=scaled(5))
        await ib_provider.close()
    assert collector.table().column("size").to_pylist() == [4.0, 5.0, 6.0, 7.0, 8.0]


@pytest.mark.asyncio
async def test_invalid_and_crossed_quotes_are_counted_not_emitted(
    fake_ib, make_context, collector
) -> None:
    ib_provider = provider(kind="quotes", symbols=[{"symbol": "EURUSD", "sec_type": "CASH"}])
    ctx = make_context("ib")
    await ib_provider.open(ctx)
    ib = fake_ib.instances[0]
    ib.quote("EURUSD", math.nan, 1.1, 0)
    ib.quote("EURUSD", 1.2, 1.1, 1)
    ib.quote("EURUSD", 1.0999, 1.1001, 2)
    task = asyncio.create_task(ib_provider.run(collector))
    try:
        await collector.wait_rows(1)
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, timeout=scaled(5))
        await ib_provider.close()
    assert ctx.stats.counters["invalid"] == 2
    assert collector.table().to_pylist()[0]["symbol"] == "EURUSD"
    assert ib.tickers["EURUSD"].contract.exchange == "IDEALPRO"


@pytest.mark.asyncio
async def test_delayed_data_and_contract_defaults(fake_ib, make_context) -> None:
    ib_provider = provider(
        market_data_type=3,
        symbols=[
            "AAPL",
            {"symbol": "SAP", "exchange": "IBIS", "currency": "EUR", "name": "SAP.DE"},
        ],
    )
    await ib_provider.open(make_context("ib"))
    ib = fake_ib.instances[0]
    await ib_provider.close()
    assert ib.market_data_type == 3
    aapl, sap = ib.tickers["AAPL"].contract, ib.tickers["SAP"].contract
    assert (aapl.secType, aapl.exchange, aapl.currency) == ("STK", "SMART", "USD")
    assert (sap.exchange, sap.currency) == ("IBIS", "EUR")
    assert [c.name for c in ib_provider.contracts] == ["AAPL", "SAP.DE"]


def test_bad_params_fail_validation_naming_the_node() -> None:
    graph = Graph.build(
        [node("ib", "ibkr", symbols=["AAPL", {"symbol": "AAPL"}]), node("out", "null")],
        ["ib -> out"],
    )
    with pytest.raises(GraphError, match="same name") as info:
        graph.validated()
    assert info.value.node_id == "ib"

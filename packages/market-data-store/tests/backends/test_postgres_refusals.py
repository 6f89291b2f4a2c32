"""Records PostgreSQL refuses, against a real server: a refused record costs only itself,
and no row acknowledged to a writer is ever missing. Nothing is mocked."""

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from market_data_core import Trade
from market_data_core.testing import T0, make_trade
from market_data_store.dlq import FileDeadLetterStore
from market_data_store.dsn import DatabaseUrl
from market_data_store.service import create_app
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

pytestmark = pytest.mark.asyncio

WRITERS, BATCHES, ROWS = 20, 5, 50
POISONED = (7, 2)  # writer 7's third batch


def _settings(url: DatabaseUrl, tmp_path: Path) -> StoreSettings:
    return StoreSettings(
        database_url=SecretStr(url.secret()),
        dead_letter_path=str(tmp_path / "dlq.ndjson"),
        batch_size=500,  # batches mix the requests of many writers
        flush_interval=0.05,
        health_interval=0.2,
    )


def _trades(writer: int, batch: int) -> list[Trade]:
    base = T0 + timedelta(minutes=batch)
    return [
        make_trade(symbol=f"W{writer}", ts=base + timedelta(milliseconds=i), price=100.0 + i)
        for i in range(ROWS)
    ]


async def _stored(url: DatabaseUrl) -> set[tuple[str, Any, float]]:
    connection = await asyncpg.connect(url.asyncpg_dsn())
    try:
        rows = await connection.fetch("SELECT symbol, ts, price FROM trades")
    finally:
        await connection.close()
    return {(r["symbol"], r["ts"], r["price"]) for r in rows}


def _keys(trades: list[Trade]) -> set[tuple[str, Any, float]]:
    return {(t.symbol, t.ts, t.price) for t in trades}


async def test_no_acknowledged_row_is_missing_with_a_poison_request_among_20_writers(
    pg_url: DatabaseUrl, tmp_path: Path
) -> None:
    """20 writers post concurrently over HTTP; one request carries a NUL character, which
    PostgreSQL cannot store. Every row answered 202 is in the database; the poisoned request
    is refused (422, naming the field) and nothing else suffers."""
    settings = _settings(pg_url, tmp_path)
    app = create_app(settings)
    acked: list[Trade] = []
    answers: dict[tuple[int, int], httpx.Response] = {}

    async def writer(client: httpx.AsyncClient, n: int) -> None:
        for b in range(BATCHES):
            body = [t.model_dump(mode="json") for t in _trades(n, b)]
            if (n, b) == POISONED:
                body[17]["exchange"] = "XN\x00AS"
            response = await client.post("/v1/trades", json=body)
            answers[n, b] = response
            if response.status_code == 202:
                acked.extend(_trades(n, b))

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://store") as client:
            await asyncio.gather(*(writer(client, n) for n in range(WRITERS)))
            everything = await client.get(
                "/v1/trades",
                params={"symbol": "W3", "start": "0001-01-01T00:00:00+01:00",
                        "end": "9999-12-31T23:00:00-05:00", "limit": 10_000},
            )  # fmt: skip

    poisoned = answers.pop(POISONED)
    assert poisoned.status_code == 422
    assert poisoned.json()["errors"][0]["loc"][:2] == [17, "exchange"]
    assert {r.status_code for r in answers.values()} == {202}
    stored = await _stored(pg_url)
    assert _keys(acked) - stored == set()  # no acknowledged row is missing
    assert len(acked) == (WRITERS * BATCHES - 1) * ROWS
    assert stored == _keys(acked)  # and nothing of the refused request was stored
    assert everything.status_code == 200
    assert len(everything.json()) == BATCHES * ROWS
    assert await FileDeadLetterStore(settings.dead_letter_path).count() == 0


async def test_a_record_postgresql_refuses_is_isolated_from_its_batch_mates(
    pg_url: DatabaseUrl, tmp_path: Path
) -> None:
    """Past the edge (a record built without validation, as a buggy in-process caller
    could): PostgreSQL refuses the whole COPY; the coordinator isolates the record, every
    other caller's records are written, and the poisoned caller's receipt names it."""
    settings = _settings(pg_url, tmp_path)
    calls = {n: _trades(n, 0) for n in range(WRITERS)}
    poison = calls[7][17].model_copy(update={"exchange": "XN\x00AS"})  # not validated
    calls[7][17] = poison
    async with Store(settings) as store:
        receipts = await asyncio.gather(*(store.submit_many(c) for c in calls.values()))
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in receipts)), 120)
        stats = store.coordinator.stats()
    for n, receipt in enumerate(receipts):
        if n == 7:
            assert (receipt.written, receipt.dead_lettered) == (ROWS - 1, 1)
            assert [r.index for r in receipt.refused] == [17]
            assert "0x00" in receipt.refused[0].reason
        else:
            assert receipt.stored, (n, receipt)
    good = [t for c in calls.values() for t in c if t is not poison]
    assert await _stored(pg_url) == _keys(good)
    assert (stats.refused, stats.dead_lettered, stats.failed) == (1, 1, 0)
    assert stats.isolations >= 1
    assert await FileDeadLetterStore(settings.dead_letter_path).count() == 1

"""What the cross-package tests share: waiting for a condition, the pandas oracle for bars,
reading bars back from a store, and writing an orchestrator deployment.

Importable from every test module here (the root pytest config puts this folder on
``sys.path``): ``from harness import until, oracle_bars``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml
from pydantic import SecretStr

from market_data_core.testing.servers import scaled
from market_data_orchestrator import testing
from market_data_store.settings import StoreSettings
from market_data_store.store import Store

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"
EVER_START = datetime(1970, 1, 2, tzinfo=UTC)
EVER_END = datetime(2100, 1, 1, tzinfo=UTC)
OHLCV = ("open", "high", "low", "close", "volume")


async def until(predicate: Callable[[], bool], what: str, limit: float = 60.0) -> float:
    """Wait until ``predicate()`` holds; the seconds it took. Fails naming ``what``
    (``limit`` is ``scaled`` to the machine's load)."""
    limit = scaled(limit)
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < limit, (
            f"timed out after {limit:.0f} s waiting for {what}"
        )
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def oracle_bars(trades: pd.DataFrame, rule: str) -> pd.DataFrame:
    """pandas' OHLCV bars of ``trades`` (columns symbol, ts, price, size) per symbol, left
    labelled and left closed, empty bins dropped: what the resampler must produce."""
    trades = trades.sort_values("ts", kind="stable").set_index("ts")
    grouped = trades.groupby("symbol").resample(rule, label="left", closed="left")
    bars = grouped.agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("size", "sum"),
        trade_count=("price", "count"),
    )
    bars = bars[bars["trade_count"] > 0].reset_index().rename(columns={"ts": "start"})
    return bars.sort_values(["symbol", "start"]).reset_index(drop=True)


def oracle_rollup(bars: pd.DataFrame, rule: str) -> pd.DataFrame:
    """pandas' roll-up of bars (columns symbol, start, OHLCV) into ``rule`` bars."""
    bars = bars.sort_values("start", kind="stable").set_index("start")
    grouped = bars.groupby("symbol").resample(rule, label="left", closed="left")
    rolled = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        n=("open", "count"),
    )
    rolled = rolled[rolled["n"] > 0].drop(columns="n").reset_index()
    return rolled.sort_values(["symbol", "start"]).reset_index(drop=True)


def real_trades(name: str = "btcusdt-trades.parquet", symbol: str = "BTC/USDT") -> pd.DataFrame:
    """The real Binance trades of ``examples/data`` as (symbol, ts, price, size)."""
    raw = pd.read_parquet(DATA / name)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": raw["timestamp"].dt.tz_convert("UTC"),
            "price": raw["price"],
            "size": raw["quantity"],
        }
    )


async def stored_bars(
    dsn: str, timeframe: str, *, source: str | None = None, symbols: Iterable[str] | None = None
) -> pd.DataFrame:
    """Every bar of ``timeframe`` (and ``source``) in the store at ``dsn``, sorted."""
    async with Store(StoreSettings(database_url=SecretStr(dsn))) as store:
        if symbols is None:
            symbols = sorted({f.symbol for f in await store.freshness() if f.table == "bars"})
        rows = []
        for symbol in symbols:
            rows += await store.query_bars(
                symbol, timeframe, EVER_START, EVER_END, source=source, limit=1_000_000
            )
    frame = pd.DataFrame([bar.model_dump() for bar in rows])
    if frame.empty:
        return frame
    return frame.sort_values(["symbol", "start"]).reset_index(drop=True)


def assert_bars_equal(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    """Same bars (symbol, start, OHLCV; trade counts where both have them), else a failure
    that names ``what`` and the first difference."""
    assert len(got) == len(want), f"{what}: {len(got)} bars stored, pandas makes {len(want)}"
    assert list(got["symbol"]) == list(want["symbol"]), f"{what}: symbols differ"
    starts = pd.to_datetime(got["start"], utc=True)
    assert list(starts) == list(want["start"]), f"{what}: bar starts differ"
    for column in OHLCV:
        pd.testing.assert_series_equal(
            got[column].astype(float),
            want[column].astype(float),
            check_names=False,
            rtol=1e-9,
            obj=f"{what}: {column}",
        )
    if "trade_count" in want:
        assert list(got["trade_count"]) == list(want["trade_count"]), f"{what}: trade counts"


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_deployment(
    directory: Path,
    jobs: list[dict[str, Any]],
    *,
    store_url: str,
    feedback_redis: str | None = None,
    **extra: Any,
) -> Path:
    """An orchestrator deployment file in ``directory`` for ``jobs``, following the store
    at ``store_url`` closely (0.2 s polls, two answers to change its mind)."""
    deployment: dict[str, Any] = {
        "jobs": jobs,
        "store": {
            "url": store_url,
            "poll_interval": 0.2,
            "timeout": 1.0,
            "unhealthy_after": 2,
            "healthy_after": 2,
        },
        "audit": {"path": str(directory / "audit.jsonl")},
        **extra,
    }
    if feedback_redis is not None:
        deployment["feedback"] = {"redis_url": feedback_redis}
    return write_yaml(directory / "deployment.yaml", deployment)


class OrchestratorService(testing.OrchestratorService):
    """``mdo serve DEPLOYMENT`` (market_data_orchestrator.testing) with a viewer token
    added to the deployment to read its API; ``jobs()`` is ``GET /v1/jobs`` by name."""

    TOKEN = "viewer-token-for-the-tests"

    def __init__(self, deployment: Path) -> None:
        spec = yaml.safe_load(deployment.read_text())
        digest = hashlib.sha256(self.TOKEN.encode()).hexdigest()
        security = spec.setdefault("security", {})
        security.setdefault("tokens", []).append(
            {"name": "tests", "role": "viewer", "sha256": digest}
        )
        super().__init__(write_yaml(deployment, spec))

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.TOKEN}"}
        response = httpx.get(f"{self.url}{path}", headers=headers, timeout=10)
        assert response.status_code < 500, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def jobs(self) -> dict[str, dict[str, Any]]:
        return {job["name"]: job for job in self.get("/v1/jobs")}

    async def until_jobs(self, state: str, limit: float = 120.0) -> dict[str, dict[str, Any]]:
        """Wait until every job is in ``state`` (fails at once if one failed)."""
        seen: dict[str, dict[str, Any]] = {}

        def done() -> bool:
            nonlocal seen
            seen = self.jobs()
            failed = [job for job in seen.values() if job["state"] == "failed"]
            assert not failed, f"a job failed: {failed}\n{self.log_tail()}"
            return all(job["state"] == state for job in seen.values())

        await until(done, f"every job to be {state}", limit)
        return seen

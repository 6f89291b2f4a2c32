import asyncio
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from market_data_core import FeedbackEvent, RateAdjustment
from market_data_core.testing.servers import scaled
from market_data_pipeline.components import Context, NodeStats
from market_data_pipeline.marks import Mark

DATA = Path(__file__).resolve().parents[4] / "examples" / "data"


class PausableRate:
    """A rate controller a test pauses and resumes; records what was acquired."""

    def __init__(self, *, paused: bool = False) -> None:
        self._running = asyncio.Event()
        if not paused:
            self._running.set()
        self.waiting = asyncio.Event()
        """Set once ``acquire`` blocked because the controller is paused."""
        self.acquired: list[int] = []

    @property
    def scale(self) -> float:
        return 1.0 if self._running.is_set() else 0.0

    async def on_feedback(self, event: FeedbackEvent) -> RateAdjustment | None:
        return None

    async def acquire(self, count: int = 1) -> None:
        if not self._running.is_set():
            self.waiting.set()
            await self._running.wait()
        self.acquired.append(count)

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()


class Collect:
    """An ``emit`` that keeps batches and tells when ``rows`` rows arrived."""

    def __init__(self) -> None:
        self.batches: list[pa.Table] = []
        self.marks: list[Mark] = []
        self.rows = 0
        self._waiters: list[tuple[int, asyncio.Event]] = []

    async def __call__(self, batch: pa.Table, port: str = "out") -> None:
        self.batches.append(batch)
        self.rows += batch.num_rows
        for rows, event in self._waiters:
            if self.rows >= rows:
                event.set()

    async def mark(self, mark: Mark) -> None:
        self.marks.append(mark)

    async def wait_rows(self, rows: int) -> None:
        event = asyncio.Event()
        self._waiters.append((rows, event))
        if self.rows >= rows:
            event.set()
        await asyncio.wait_for(event.wait(), timeout=scaled(10))

    def table(self) -> pa.Table:
        return pa.concat_tables(self.batches)


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def pausable_rate() -> PausableRate:
    return PausableRate()


@pytest.fixture
def make_context() -> Callable[..., Context]:
    def make(node_id: str = "node", *, rate: object | None = None) -> Context:
        return Context(
            node_id=node_id,
            job="test",
            stats=NodeStats(),
            rate=rate or PausableRate(),
            stopping=asyncio.Event(),
        )

    return make


@pytest.fixture
def collector() -> Collect:
    return Collect()

"""The drain report of a stopped job fits core's ``DrainReport`` (the ``--control`` summary)."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from market_data_core.job_protocol import DrainReport
from market_data_pipeline._drain import Drain
from market_data_pipeline.runtime import RunResult, RunState


class _Coordinator:
    """A store coordinator whose drain dead-letters ``rows`` records."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.drained = False

    def stats(self) -> SimpleNamespace:
        lost = self.rows if self.drained else 0
        return SimpleNamespace(dead_lettered=lost, dropped=0, failed=0)

    async def stop(self, **_: Any) -> None:
        self.drained = True


class _Store:
    def __init__(self, rows: int, path: Path) -> None:
        self.coordinator = _Coordinator(rows)
        self.settings = SimpleNamespace(dead_letter_path=path)

    async def stop(self, **_: Any) -> None:
        return None


@pytest.mark.asyncio
async def test_a_drain_that_dead_letters_rows_validates_as_the_summary_contract(
    tmp_path: Path,
) -> None:
    drain = Drain(timeout=1.0)
    drain.start()
    await drain.close_store(_Store(7, tmp_path / "dlq.ndjson"))
    report = drain.report(RunResult(job="j", state=RunState.STOPPED, seconds=1.0))

    validated = DrainReport.model_validate(report)

    assert validated.not_flushed is not None
    assert validated.not_flushed.store == {"dead_lettered": 7}
    assert report["not_flushed"]["dead_letter_path"] == str(tmp_path / "dlq.ndjson")
    assert validated.complete is False

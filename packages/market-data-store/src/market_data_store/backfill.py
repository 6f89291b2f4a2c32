"""Backfill jobs started by the store: a pipeline config run by ``mdp run`` in a child process.

The store does not import the pipeline (dependencies point one way, DESIGN §1): it runs the
``mdp`` command of ``market-data-pipeline`` as a supervised child. Every ``store`` sink of
the config that names no ``url`` or ``database`` of its own is pointed at this service's
HTTP ingest, so the backfill's writes go through the same write coordinator, idempotency
and backpressure as every other writer (and SQLite keeps a single writer). The run is a
``JobRun`` (mode ``backfill``): heartbeats while the child runs, then ``succeeded`` with the
rows the sinks received, or ``failed`` with the child's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from market_data_store.exceptions import BackfillUnavailableError, StoreConfigurationError
from market_data_store.jobs import JobRun, JobRunTracker

__all__ = ["BackfillRunner", "BackfillUnavailableError"]

logger = structlog.get_logger(__name__)

_ERROR_TAIL = 2_000


def find_mdp() -> str | None:
    """The ``mdp`` executable: next to this Python first (a virtualenv), then on PATH."""
    beside = Path(sys.executable).parent / "mdp"
    return str(beside) if beside.exists() else shutil.which("mdp")


def _targeted(pipeline: Mapping[str, Any], ingest_url: str) -> dict[str, Any]:
    """The config with its default ``store`` sinks writing to ``ingest_url``."""
    config: dict[str, Any] = json.loads(json.dumps(dict(pipeline)))
    config.pop("settings", None)
    nodes = list(config.get("nodes") or [])
    if "sink" in config and isinstance(config["sink"], dict):
        nodes.append(config["sink"])
    for spec in nodes:
        if isinstance(spec, dict) and spec.get("type") == "store":
            params = spec.setdefault("params", {})
            if isinstance(params, dict) and not {"url", "database"} & set(params):
                params["url"] = ingest_url
    return config


def _providers(pipeline: Mapping[str, Any]) -> str:
    sources = [n for n in pipeline.get("nodes") or [] if isinstance(n, dict)]
    if isinstance(pipeline.get("source"), dict):
        sources.append(pipeline["source"])
    types = sorted({str(n.get("type")) for n in sources if n.get("type") in _PROVIDER_TYPES})
    return ",".join(types) or "pipeline"


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


_PROVIDER_TYPES = {"synthetic", "replay", "ibkr", "redis_stream"}


class BackfillRunner:
    """Starts backfill children and follows them to the end."""

    def __init__(
        self, tracker: JobRunTracker, *, heartbeat_interval: float = 5.0, mdp: str | None = None
    ) -> None:
        self.tracker = tracker
        self.heartbeat_interval = heartbeat_interval
        self.mdp = mdp
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._workdir = tempfile.TemporaryDirectory(prefix="mds-backfill-")

    @property
    def running(self) -> list[str]:
        return [run_id for run_id, task in self._tasks.items() if not task.done()]

    def _command(self) -> str:
        mdp = self.mdp or find_mdp()
        if mdp is None:
            msg = (
                "backfills run the pipeline's `mdp` command, which is not installed here:"
                " pip install 'market-data-pipeline[store]'"
            )
            raise BackfillUnavailableError(msg)
        return mdp

    async def validate(self, pipeline: Mapping[str, Any], ingest_url: str) -> Path:
        """Write the targeted config and have ``mdp validate`` check it; return its path."""
        mdp = self._command()
        path = Path(self._workdir.name) / f"backfill-{os.urandom(6).hex()}.json"
        path.write_text(json.dumps(_targeted(pipeline, ingest_url), indent=2))
        child = await asyncio.create_subprocess_exec(
            mdp, "validate", str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await child.communicate()
        if child.returncode != 0:
            _remove(path)
            message = (err or out).decode(errors="replace").strip().removeprefix("error: ")
            raise StoreConfigurationError(message.replace(str(path), "pipeline") or "invalid")
        return path

    async def start(
        self, name: str, pipeline: Mapping[str, Any], ingest_url: str, *, symbols: list[str]
    ) -> JobRun:
        """Validate, record the run, start the child; return the run (status running)."""
        path = await self.validate(pipeline, ingest_url)
        run = await self.tracker.start(
            name, provider=_providers(pipeline), mode="backfill", symbols=symbols, config=pipeline
        )
        child = await asyncio.create_subprocess_exec(
            self._command(), "run", str(path), "--json", "--quiet",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        logger.info("backfill started", run_id=run.id, job=name, pid=child.pid)
        self._tasks[run.id] = asyncio.create_task(self._follow(run.id, child, path))
        return run

    async def _follow(self, run_id: str, child: asyncio.subprocess.Process, path: Path) -> None:
        communicate = asyncio.ensure_future(child.communicate())
        try:
            while not communicate.done():
                await asyncio.wait({communicate}, timeout=self.heartbeat_interval)
                if not communicate.done():
                    await self.tracker.heartbeat(run_id)
            out, err = communicate.result()
            await self._complete(run_id, child.returncode, out, err)
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(communicate, timeout=10)
            await self.tracker.complete(run_id, status="cancelled", error="the store stopped")
            raise
        finally:
            _remove(path)

    async def _complete(self, run_id: str, code: int | None, out: bytes, err: bytes) -> None:
        if code == 0:
            summary = json.loads(out.decode() or "{}")
            written = sum(
                int(node.get("in", 0))
                for node in summary.get("nodes", {}).values()
                if node.get("kind") == "sink"
            )
            await self.tracker.heartbeat(run_id, rows_written=written)
            await self.tracker.complete(run_id, status="succeeded")
            logger.info("backfill finished", run_id=run_id, rows=written)
            return
        error = err.decode(errors="replace").strip()[-_ERROR_TAIL:] or f"exit code {code}"
        await self.tracker.complete(run_id, status="failed", error=error)
        logger.warning("backfill failed", run_id=run_id, code=code)

    async def aclose(self) -> None:
        """Stop every running child (each run is marked cancelled)."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._workdir.cleanup()

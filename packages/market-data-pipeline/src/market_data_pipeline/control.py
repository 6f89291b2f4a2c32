"""The control channel between a supervisor and ``mdp run --control``: JSON lines on stdio.

A supervisor (the orchestrator) runs ``mdp run CONFIG --control`` as a child process and
talks to it over its standard streams, one JSON object per line, each one of core's
contracts (``market_data_core.job_protocol``: ``JobCommand`` in, ``JobEvent`` out):

- **stdin, commands:** ``{"action": "pause" | "resume" | "reload", "id": "..."}``. The
  ``id`` (optional) comes back in the answer. End of stdin means nothing: the job goes on.
- **stdout, events:** ``{"event": "started", "job", "pid", "mode"}``;
  ``{"event": "progress", "state", "nodes": {id: {"in", "out"}}, "pauses"}`` every
  ``interval`` seconds; ``{"event": "control", "id", "result": <core ControlResult>}``,
  the child's acknowledgement of each command; ``{"event": "error", "message"}`` for a
  command it could not read; and last ``{"event": "summary", ...}`` (what ``--json``
  prints).

SIGTERM (and SIGINT) make the job stop with drain: providers stop, everything already
emitted reaches the sinks, the summary is printed, and the process exits 0. The drain
takes at most ``drain_timeout`` seconds (``MDP_DRAIN_TIMEOUT``); what it could not flush
in that time is named in the summary's ``drain``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import TextIO

from pydantic import BaseModel, ValidationError

from market_data_core.job_protocol import (
    JobCommand,
    JobControlAck,
    JobError,
    JobProgress,
    NodeProgress,
)
from market_data_pipeline.job import UnifiedRuntime

__all__ = ["ControlChannel", "ignore_stop_signals", "install_stop_signals", "stdin_reader"]


class ControlChannel:
    """Reads commands from a stream, applies them to a runtime, writes events as JSON lines."""

    def __init__(
        self, runtime: UnifiedRuntime, *, out: TextIO | None = None, interval: float = 1.0
    ) -> None:
        self.runtime = runtime
        self.out = out or sys.stdout
        self.interval = interval

    def emit(self, event: BaseModel) -> None:
        """Write one event (a ``JobEvent`` member) as a line."""
        self.out.write(event.model_dump_json(by_alias=True) + "\n")
        self.out.flush()

    async def handle(self, line: str) -> None:
        """Apply one command line and acknowledge it (or say why it could not be read)."""
        try:
            command = JobCommand.model_validate_json(line)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in error.errors()
            )
            self.emit(JobError(message=f"unreadable command {line.strip()[:200]!r}: {problems}"))
            return
        result = await self.runtime.control(command.action)
        self.emit(JobControlAck(id=command.id, result=result))

    async def read_commands(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            if line.strip():
                await self.handle(line.decode(errors="replace"))

    async def report_progress(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            current = self.runtime.current
            nodes = (
                {
                    n: NodeProgress.model_validate({"in": s.items_in, "out": s.items_out})
                    for n, s in current.stats.items()
                }
                if current is not None
                else {}
            )
            state = str(self.runtime.state)
            self.emit(JobProgress(state=state, nodes=nodes, pauses=self.runtime.pauses))


async def stdin_reader() -> asyncio.StreamReader:
    """Standard input as an asyncio stream (a pipe from the supervisor)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def install_stop_signals(stop: Callable[[], object]) -> None:
    """SIGTERM and SIGINT call ``stop`` (a graceful, draining stop) instead of killing."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


def ignore_stop_signals() -> None:
    """The job has ended: ignore SIGTERM from now on (``mdp run --control``).

    A supervisor repeats SIGTERM until the child exits; once the event loop closes, asyncio
    gives the signal back its default action, which would kill the exit half-way (exit code
    -15 after a clean drain). The signal is blocked while its handler is swapped, so none
    falls in between.
    """
    loop = asyncio.get_running_loop()
    term = {signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, term)
    try:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, term)

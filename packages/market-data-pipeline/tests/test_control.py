"""``mdp run --control``: a supervisor pauses, resumes and stops a real child process."""

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from market_data_core.testing.servers import scaled


class Child:
    """``mdp run --control`` as a supervisor runs it. Its stdout is read by a thread and its
    stderr goes to a file, so a child writing while the test does something else never
    blocks on a full pipe."""

    def __init__(self, config: Path, database: Path, *flags: str) -> None:
        self.log = database.with_suffix(".stderr.log")
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "market_data_pipeline.cli", "run", str(config),
                 "--control", "--database-url", f"sqlite:///{database}", *flags],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            )  # fmt: skip
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def next(self, event: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + scaled(timeout)
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the child ended: {self.log.read_text()[-2000:]}")
            message = json.loads(line)
            if message["event"] == event:
                return message
        raise AssertionError(f"no {event!r} event within {timeout} s")

    def next_progress(self, condition: Any, timeout: float = 60) -> dict[str, Any]:
        """The first progress event that meets ``condition`` (within ``timeout``, scaled)."""
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            progress = self.next("progress", timeout=max(deadline - time.monotonic(), 0.1))
            if condition(progress):
                return progress
        raise AssertionError(f"no progress event as expected within {timeout} s")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "paced.yaml"
    path.write_text(
        "name: paced\n"
        "nodes:\n"
        "  - {id: trades, type: synthetic, params: {symbols: 2, count: 100000, batch_size: 500,"
        " rate: 5000}}\n"
        "  - {id: bars, type: resample_ohlc, params: {timeframe: 1s}}\n"
        "  - {id: store, type: store}\n"
        "edges: [trades -> bars, bars -> store]\n"
    )
    return path


def test_pause_resume_and_a_draining_sigterm(config: Path, tmp_path: Path) -> None:
    drain = round(scaled(10), 1)  # ample for this small job, even on a busy machine
    child = Child(config, tmp_path / "md.db", "--drain-timeout", str(drain))
    try:
        started = child.next("started")
        assert started["job"] == "paced"
        child.send(action="pause", id="p1")
        ack = child.next("control")
        assert ack["id"] == "p1"
        assert ack["result"]["status"] == "accepted"
        assert ack["result"]["action"] == "pause"
        # progress lists no nodes while the graph is still opening (a slow machine)
        first = child.next_progress(lambda p: "trades" in p["nodes"])["nodes"]["trades"]["out"]
        held = child.next("progress")
        assert held["state"] == "paused"
        assert held["nodes"]["trades"]["out"] == first  # nothing emitted while paused
        child.send(action="resume", id="r1")
        assert child.next("control")["result"]["status"] == "accepted"
        child.next_progress(lambda p: p["nodes"]["trades"]["out"] > first)  # moving again
        child.send(action="jump")
        assert "unreadable command" in child.next("error")["message"]
        child.process.send_signal(signal.SIGTERM)
        summary = child.next("summary")
        assert child.process.wait(scaled(30)) == 0
    finally:
        child.close()
    assert summary["state"] == "stopped"  # stopped early, not completed
    emitted = summary["nodes"]["trades"]["out"]
    assert 0 < emitted < 100_000
    bars_out = summary["nodes"]["bars"]["out"]
    assert summary["nodes"]["store"]["in"] == bars_out  # drained: every bar reached the store
    assert summary["store"]["tables"]["bars"][1] == bars_out
    assert summary["drain"]["complete"] is True
    assert summary["drain"]["timeout"] == drain


def test_sigterm_repeated_until_the_child_exits_still_ends_in_exit_0(
    config: Path, tmp_path: Path
) -> None:
    """A supervisor repeats SIGTERM until its child exits: one landing after the job ended
    (while the process exits) must not kill it with -15."""
    child = Child(config, tmp_path / "md.db")
    try:
        child.next("started")  # the stop handler is installed
        deadline = time.monotonic() + scaled(60)
        while child.process.poll() is None:
            assert time.monotonic() < deadline, "the child did not exit"
            child.process.send_signal(signal.SIGTERM)
            time.sleep(0.005)
        assert child.process.returncode == 0
    finally:
        child.close()


def test_a_sigterm_whose_drain_cannot_end_in_its_timeout_exits_0_and_says_what_was_not_flushed(
    tmp_path: Path,
) -> None:
    """A throttle at 100 rows/s behind an unpaced source: the rows queued in front of it
    would take minutes to drain. After --drain-timeout the child gives up on them, names
    them in its summary and exits 0."""
    config = tmp_path / "throttled.yaml"
    config.write_text(
        "name: throttled\n"
        "nodes:\n"
        "  - {id: trades, type: synthetic, params: {symbols: 2, count: 1000000,"
        " batch_size: 1000}}\n"
        "  - {id: slow, type: throttle, params: {rate: 100}}\n"
        "  - {id: bars, type: resample_ohlc, params: {timeframe: 1s}}\n"
        "  - {id: store, type: store}\n"
        "edges: [trades -> slow, slow -> bars, bars -> store]\n"
    )
    child = Child(config, tmp_path / "md.db", "--drain-timeout", "1")
    try:
        child.next("started")
        while child.next("progress")["nodes"].get("slow", {}).get("out", 0) == 0:
            pass  # until rows flow through the throttle
        child.process.send_signal(signal.SIGTERM)
        summary = child.next("summary")
        assert child.process.wait(scaled(60)) == 0
    finally:
        child.close()
    assert summary["state"] == "stopped"
    drain = summary["drain"]
    assert (drain["timeout"], drain["complete"]) == (1.0, False)
    assert drain["not_flushed"]["channels"]["slow"] > 0
    assert {"slow", "bars"} <= set(drain["not_flushed"]["cancelled"])

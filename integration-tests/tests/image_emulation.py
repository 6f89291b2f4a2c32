"""Images emulated without a Docker engine, for the image tests: commands run in their
own process group, and a ``Container``: an image's command run from the virtualenv its
Dockerfile line installed, with its own file system under a directory, its ports mapped to
free ports on 127.0.0.1 and compose's host names to the servers of the test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from market_data_core.testing.servers import scaled

_LEAKY = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "UV_PROJECT_ENVIRONMENT"}


def host_env(**extra: str) -> dict[str, str]:
    """This machine's environment (its index, proxy and certificate settings) without what
    would let the test's own virtualenv leak into a build or an image."""
    return {k: v for k, v in os.environ.items() if k not in _LEAKY} | extra


def map_paths(text: str, mapping: dict[str, Path]) -> str:
    """Container paths (``/dist``, ``/wheels/x.whl``) in a command, as host paths."""
    for inside, outside in mapping.items():
        pattern = rf"(?<![\w./-]){re.escape(inside)}(?=[/\s\"']|$)"
        text = re.sub(pattern, str(outside).replace("\\", "\\\\"), text)
    return text


def run_command(args: list[str], *, what: str, limit: float, **kwargs: Any) -> str:
    """Run a command to its end in a process group of its own (killed whole on timeout);
    its output. Fails naming ``what`` and the output's tail."""
    started = time.monotonic()
    with subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    ) as process:
        try:
            output, _ = process.communicate(timeout=scaled(limit))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"{what}: no end after {scaled(limit):.0f} s:\n{output[-4000:]}")
    assert process.returncode == 0, f"{what}: exit {process.returncode}:\n{output[-4000:]}"
    print(f"\n{what}: {time.monotonic() - started:.1f} s")
    return output


@dataclass(frozen=True)
class Image:
    target: str
    venv: Path
    env: dict[str, str]  # the image's ENV
    workdir: str


_MOUNTS = ("/etc/market-data", "/var/lib/market-data", "/tmp")


@dataclass
class Container:
    """An image's CMD run from its virtualenv: its own file system under ``root`` (the
    paths of ``_MOUNTS``), its ports mapped to free ports on 127.0.0.1."""

    image: Image
    root: Path
    ports: dict[int, int]
    hosts: dict[str, str] = field(default_factory=dict)  # compose host names -> here
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        for mount in _MOUNTS:
            self.path(mount).mkdir(parents=True, exist_ok=True)

    @property
    def log(self) -> Path:
        return self.root / "container.log"

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def url(self, port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def localize(self, value: str) -> str:
        for old, new in self.hosts.items():
            value = value.replace(old, new)
        for inside, outside in self.ports.items():
            value = value.replace(f"127.0.0.1:{inside}", f"127.0.0.1:{outside}")
        if value == "0.0.0.0":  # bind 127.0.0.1 only on the shared test machine
            return "127.0.0.1"
        if any(value == m or value.startswith(m + "/") for m in _MOUNTS):
            return str(self.path(value))
        return value

    def localize_tree(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.localize_tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.localize_tree(v) for v in value]
        return self.localize(value) if isinstance(value, str) else value

    def _port(self, value: str) -> str:
        return (
            str(self.ports[int(value)]) if value.isdigit() and int(value) in self.ports else value
        )

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {
            "PATH": f"{self.image.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.path("/var/lib/market-data")),
            "LANG": "C.UTF-8",
        }
        for key, value in {**self.image.env, **extra}.items():
            env[key] = self._port(value) if key.endswith("_PORT") else self.localize(value)
        return env

    def command(self, words: list[str]) -> list[str]:
        local = [self.localize(w) for w in words]
        return [self._port(w) if local[i - 1] == "--port" else w for i, w in enumerate(local)]

    def start(self, words: list[str], env: dict[str, str]) -> None:
        command = self.command(words)
        program = self.image.venv / "bin" / command[0]
        assert program.is_file(), f"{command[0]} is no command of the {self.image.target} image"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(program), *command[1:]],
                cwd=self.path(self.image.workdir),
                env=self.env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, predicate: Callable[[], bool], what: str, limit: float) -> float:
        started = time.monotonic()
        deadline = started + scaled(limit)
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"{what}: exit {self.process.returncode}:\n{self.tail()}")
            try:
                if predicate():
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        pytest.fail(f"timed out after {scaled(limit):.0f} s waiting for {what}:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM (the drain), SIGKILL of its process group when it does not end."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(scaled(60))
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(scaled(30))

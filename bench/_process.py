"""Whole processes for the benchmarks: each child a fresh process of ``PYTHON``
(``MD_BENCH_PYTHON``, the bench session's user environment), timed from spawn to exit,
with its own peak memory (``_peak.py``)."""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from _report import Sample

PYTHON = os.environ.get("MD_BENCH_PYTHON", sys.executable)
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def compile_bytecode(env: dict[str, str]) -> None:
    """Bytecode for this interpreter's and ``PYTHON``'s packages (each once)."""
    paths = [sysconfig.get_paths()["purelib"], *(str(p) for p in ROOT.glob("packages/*/src"))]
    paths.append(str(BENCH))
    for path in paths:
        compileall.compile_dir(path, quiet=2, workers=0)
    if sys.executable != PYTHON:
        code = "import compileall, sysconfig; compileall.compile_dir("
        code += "sysconfig.get_paths()['purelib'], quiet=2, workers=0)"
        subprocess.run([PYTHON, "-c", code], env=env, check=True)  # noqa: S603


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float  # spawn to exit
    peak_mib: float  # the child's own peak resident set
    stdout: str


def run_process(argv: list[str], env: dict[str, str], tmp: Path) -> Run:
    """``PYTHON argv`` as a child under ``_peak.py``: seconds from spawn to exit, its own
    peak memory (not the parent's high-water mark, which ``os.wait4`` would report)."""
    peak = tmp / "peak.kib"
    peak.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603
        [PYTHON, str(BENCH / "_peak.py"), str(peak), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Run(seconds, int(peak.read_text()) / 1024, done.stdout)


@dataclass
class Measured:
    """One subject's repetitions: whole process, in process, peak memory."""

    process: list[float] = field(default_factory=list)
    inside: list[float] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)

    def add(self, run: Run, inside: float) -> None:
        self.process.append(run.seconds)
        self.inside.append(inside)
        self.peak.append(run.peak_mib)

    def text(self, *, inside: bool = True) -> str:
        """The figures; ``inside=False`` for a subject that reports no in-process time."""
        within = f", in process {Sample(tuple(self.inside)).text()}" if inside else ""
        return (
            f"whole process {Sample(tuple(self.process)).text()}{within}, peak memory"
            f" {Sample(tuple(self.peak)).text('MiB', 0)}"
        )

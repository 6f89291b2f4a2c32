"""Run a Python program and report its own peak memory: ``python _peak.py OUT -m module
args...`` or ``python _peak.py OUT -c code args...``; at exit, OUT receives the peak
resident set of this process in KiB.

The peak is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's own
address space, which ``exec`` starts anew. ``ru_maxrss`` (``RUSAGE_SELF`` here or the
parent's ``RUSAGE_CHILDREN`` through ``os.wait4``) keeps the mark of the address space a
child was forked from, so a child of a 300 MiB benchmark reads at least 300 MiB whatever
it uses; it is the fallback where ``/proc`` is missing."""

from __future__ import annotations

import atexit
import os
import resource
import runpy
import sys


def _peak_kib() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _report(out: str) -> None:
    with open(out, "w", encoding="ascii") as file:
        file.write(str(_peak_kib()))


def main() -> None:
    out, how, *rest = sys.argv[1:]
    atexit.register(_report, out)
    if how == "-m":
        sys.argv = rest
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
    elif how == "-c":
        sys.argv = ["-c", *rest[1:]]
        exec(compile(rest[0], "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102
    else:
        sys.argv = [how, *rest]
        sys.path.insert(0, os.path.dirname(os.path.abspath(how)))
        runpy.run_path(how, run_name="__main__")


if __name__ == "__main__":
    main()

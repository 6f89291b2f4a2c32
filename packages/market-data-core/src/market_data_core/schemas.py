"""JSON Schemas of every contract, and the command that writes and checks them.

The committed copies under ``docs/contracts/`` are what other services (and other
languages) code against; ``check`` fails when the code and the committed files drift::

    mdc-schemas write docs/contracts     # after changing a contract (and CONTRACT_VERSION)
    mdc-schemas check docs/contracts     # in CI: exit 1 and name the files that differ
    mdc-schemas compat docs/contracts/releases/1.0.0   # exit 1 on a breaking change

A release keeps a copy of its schemas under ``docs/contracts/releases/<version>/``
(``mdc-schemas write docs/contracts/releases/<version>``); ``compat`` checks the code
against it with the rule in ``market_data_core.compat``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from market_data_core.bars import Bar
from market_data_core.compat import breaking_changes, load_schemas
from market_data_core.control import AuditEnvelope, ControlResult
from market_data_core.events import EventEnvelope, EventMeta
from market_data_core.federation import ClusterTopology, NodeStatus
from market_data_core.health import HealthComponent, HealthStatus, Probe
from market_data_core.instruments import Instrument
from market_data_core.job_protocol import JobCommand, JobEvent, RunSummary
from market_data_core.problems import Problem
from market_data_core.signals import Signal
from market_data_core.telemetry import FeedbackEvent, MetricPoint, RateAdjustment
from market_data_core.ticks import Quote, Trade
from market_data_core.version import CONTRACT_VERSION, __version__

__all__ = ["CONTRACTS", "check", "generate", "main", "write"]

CONTRACTS: dict[str, type[BaseModel]] = {
    "Instrument": Instrument,
    "Trade": Trade,
    "Quote": Quote,
    "Bar": Bar,
    "Signal": Signal,
    "FeedbackEvent": FeedbackEvent,
    "RateAdjustment": RateAdjustment,
    "MetricPoint": MetricPoint,
    "HealthComponent": HealthComponent,
    "HealthStatus": HealthStatus,
    "Probe": Probe,
    "ControlResult": ControlResult,
    "AuditEnvelope": AuditEnvelope,
    "NodeStatus": NodeStatus,
    "ClusterTopology": ClusterTopology,
    "EventMeta": EventMeta,
    "EventEnvelope": EventEnvelope[Any],
    "Problem": Problem,
    "JobCommand": JobCommand,
    "JobEvent": JobEvent,
    "RunSummary": RunSummary,
}
"""Every contract with a committed schema, by the name its file carries."""

_INDEX = "index.json"


def generate() -> dict[str, str]:
    """File name -> file text for every schema and the index (stable, sorted JSON)."""
    files: dict[str, str] = {}
    for name, model in CONTRACTS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$id"] = f"market-data-core/contracts/v{CONTRACT_VERSION.split('.')[0]}/{name}"
        schema["title"] = name
        files[f"{name}.json"] = _dump(schema)
    index = {"contract_version": CONTRACT_VERSION, "contracts": sorted(CONTRACTS)}
    files[_INDEX] = _dump(index)
    return files


def write(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; remove schema files of contracts that no
    longer exist. Returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = generate()
    for stale in set(_schema_files(directory)) - set(files):
        (directory / stale).unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(directory: Path) -> list[str]:
    """What differs between the code and ``directory``: one line per file (empty = none)."""
    problems = []
    files = generate()
    for name, text in sorted(files.items()):
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing (run: mdc-schemas write {directory})")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the code (run: mdc-schemas write {directory})")
    problems.extend(
        f"{directory / name}: no such contract in the code (remove it or restore the contract)"
        for name in sorted(set(_schema_files(directory)) - set(files))
    )
    return problems


def _schema_files(directory: Path) -> list[str]:
    return [path.name for path in directory.glob("*.json")] if directory.is_dir() else []


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mdc-schemas",
        description="Write or check the committed JSON Schemas of the contracts.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"market-data-core {__version__} (contract {CONTRACT_VERSION})",
        help="print the distribution, its version and the contract version, then exit",
    )
    parser.add_argument("command", choices=["write", "check", "compat"])
    parser.add_argument("directory", nargs="?", default="docs/contracts", type=Path)
    args = parser.parse_args(argv)
    if args.command == "write":
        for path in write(args.directory):
            print(f"wrote {path}")  # noqa: T201 - this is a command-line tool
        return 0
    if args.command == "compat":
        if not args.directory.is_dir():
            print(f"{args.directory}: no such directory of released schemas", file=sys.stderr)  # noqa: T201
            return 2
        breaks = breaking_changes(load_schemas(args.directory), generate())
        for line in breaks:
            print(line, file=sys.stderr)  # noqa: T201
        if not breaks:
            print(f"contract {CONTRACT_VERSION} is compatible with {args.directory}")  # noqa: T201
        return 1 if breaks else 0
    problems = check(args.directory)
    for line in problems:
        print(line, file=sys.stderr)  # noqa: T201
    if not problems:
        print(f"{len(CONTRACTS)} contract schemas match the code (contract {CONTRACT_VERSION})")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

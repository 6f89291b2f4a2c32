"""The write coordinator's arguments: their types, the limits it works under, and the checks
that refuse arguments that cannot work."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Literal, Protocol, get_args

from market_data_store.backends.base import Record, WriteResult
from market_data_store.exceptions import StoreConfigurationError

__all__ = [
    "BREAKER_POLL",
    "CRASHES_PER_BATCH",
    "RESTART_BACKOFF",
    "SPLITS_PER_BATCH",
    "CoordinatorState",
    "OnOutage",
    "Overflow",
    "Writer",
    "check_on_outage",
    "check_settings",
]

Overflow = Literal["block", "drop_oldest", "error"]
OnOutage = Literal["hold", "dead_letter"]

CRASHES_PER_BATCH = 2
"""A batch that crashed this many workers goes to the dead-letter store."""
RESTART_BACKOFF = (0.01, 1.0)
"""First and longest delay (seconds) before restarting a worker that keeps crashing."""
BREAKER_POLL = 0.05
"""How often (seconds, at most) a worker looks at an open circuit breaker."""
SPLITS_PER_BATCH = 64
"""Splits inside one caller's records (per batch) while isolating refused records."""


class Writer(Protocol):
    """What the coordinator writes to: a ``Backend``, or anything with its ``write`` (it is
    given a ``market_data_store.chunks.Batch``: a sequence of records made of chunks)."""

    async def write(self, records: Sequence[Record]) -> WriteResult: ...


class CoordinatorState(StrEnum):
    """Where a coordinator is in its life: created, running, stopping, stopped."""

    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


def check_on_outage(on_outage: str) -> None:
    """Raise ``StoreConfigurationError`` unless ``on_outage`` is one of ``OnOutage``."""
    if on_outage not in get_args(OnOutage):
        msg = f"on_outage must be one of {', '.join(get_args(OnOutage))}, got {on_outage!r}"
        raise StoreConfigurationError(msg)


def check_settings(
    *,
    capacity: int,
    workers: int,
    batch_size: int,
    flush_interval: float,
    overflow: str,
    heartbeat_interval: float,
    publish_timeout: float,
) -> None:
    """Raise ``StoreConfigurationError`` naming the first argument that cannot work."""
    problems = (
        ("capacity", capacity >= 1, f"must be >= 1, got {capacity}"),
        ("workers", workers >= 1, f"must be >= 1, got {workers}"),
        ("batch_size", batch_size >= 1, f"must be >= 1, got {batch_size}"),
        (
            "flush_interval",
            0 <= flush_interval < float("inf"),
            f"must be >= 0 seconds, got {flush_interval}",
        ),
        (
            "overflow",
            overflow in get_args(Overflow),
            f"must be one of {get_args(Overflow)}, got {overflow!r}",
        ),
        (
            "heartbeat_interval",
            0 < heartbeat_interval < float("inf"),
            f"must be > 0 seconds, got {heartbeat_interval}",
        ),
        (
            "publish_timeout",
            0 < publish_timeout < float("inf"),
            f"must be > 0 seconds, got {publish_timeout}",
        ),
    )
    for name, ok, text in problems:
        if not ok:
            msg = f"write coordinator {name} {text}"
            raise StoreConfigurationError(msg)

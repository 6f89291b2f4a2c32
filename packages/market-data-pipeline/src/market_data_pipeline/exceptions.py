"""Errors of market-data-pipeline.

Every error here subclasses core's ``MarketDataError``::

    MarketDataError (market_data_core)
    ├── ConfigurationError (market_data_core)       misuse: fix the config, then rerun
    │   └── GraphError                              an invalid graph or node config
    │       └── UnknownComponentError               no provider/operator/sink of that type
    └── PipelineError                               a failure while a job runs
        ├── NodeError                               one node failed; the job stopped
        ├── RecordError                             bad input records (file, line, field)
        ├── RuntimeStateError                       an action the runtime's state forbids
        ├── RedisUnavailableError                   Redis unreachable past reconnect_timeout
        ├── BufferOverflowError                     a ``buffer`` (overflow: error) got too much
        └── DataLossError                           the job ran, but its source lost data

Errors name what was wrong and where: the node id, the config file and line, the input
file, line and field.
"""

from __future__ import annotations

from typing import Any

from market_data_core.exceptions import ConfigurationError, MarketDataError

__all__ = [
    "BufferOverflowError",
    "DataLossError",
    "GraphError",
    "NodeError",
    "PipelineError",
    "RecordError",
    "RedisUnavailableError",
    "RuntimeStateError",
    "UnknownComponentError",
]


def _where(node_id: str | None, source: str | None, line: int | None) -> str:
    parts = []
    if source is not None:
        parts.append(f"{source}:{line}" if line is not None else source)
    if node_id is not None:
        parts.append(f"node {node_id!r}")
    return ", ".join(parts)


class GraphError(ConfigurationError):
    """The graph (or one node's config) is invalid; nothing ran."""

    def __init__(
        self,
        message: str,
        *,
        node_id: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.node_id = node_id
        self.source = source
        self.line = line
        self.reason = message
        where = _where(node_id, source, line)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownComponentError(GraphError):
    """No registered component of that kind and type."""


class PipelineError(MarketDataError):
    """A failure while a pipeline job runs."""


class NodeError(PipelineError):
    """A node raised; the runtime stopped the whole job (and says which node)."""

    def __init__(self, node_id: str, error: BaseException) -> None:
        self.node_id = node_id
        self.error = error
        super().__init__(f"node {node_id!r} failed: {type(error).__name__}: {error}")


class RecordError(PipelineError):
    """Input records that cannot be used, with where they came from."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.reason = message
        where = _where(None, source, line)
        if field is not None:
            where = f"{where}, field {field!r}" if where else f"field {field!r}"
        super().__init__(f"{where}: {message}" if where else message)


class RuntimeStateError(PipelineError):
    """The runtime is not in a state that allows this (e.g. ``run`` twice at once)."""


class RedisUnavailableError(PipelineError):
    """A Redis server stayed unreachable longer than a node's ``reconnect_timeout``; the
    message names the server (never its password)."""


class DataLossError(PipelineError):
    """The job ran to its end, but a source found that data it should have delivered was
    lost upstream (Redis lost stream entries: see the ``redis_stream`` provider).
    ``losses`` says what, ``result`` is the run's result; ``mdp run`` exits with 3."""

    def __init__(self, losses: list[str], result: Any = None) -> None:
        self.losses = list(losses)
        self.result = result
        shown = "; ".join(self.losses[:5])
        more = f" (and {len(self.losses) - 5} more)" if len(self.losses) > 5 else ""
        super().__init__(f"data was lost upstream: {shown}{more}")


class BufferOverflowError(PipelineError):
    """A ``buffer`` with ``overflow: error`` was given more rows than its capacity holds."""

    def __init__(self, node_id: str, *, capacity: int, pending: int, incoming: int) -> None:
        self.node_id = node_id
        self.capacity = capacity
        self.pending = pending
        self.incoming = incoming
        super().__init__(
            f"node {node_id!r}: buffer overflow: {pending} pending + {incoming} incoming rows"
            f" exceed the capacity of {capacity} rows (overflow: error)"
        )

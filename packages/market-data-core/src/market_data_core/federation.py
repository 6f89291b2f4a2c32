"""Federation: which nodes (orchestrators, pipelines, stores) form a cluster, and their state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Protocol, Self, runtime_checkable

from pydantic import StringConstraints, model_validator

from market_data_core._base import PeerModel
from market_data_core._types import Identifier, UtcDatetime
from market_data_core.health import HealthState

__all__ = [
    "ClusterId",
    "ClusterTopology",
    "FederationDirectory",
    "NodeId",
    "NodeRole",
    "NodeStatus",
    "Region",
]

ClusterId = Identifier
NodeId = Identifier
Region = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9\-]{0,62}$")]
"""A region name in cloud style: lower case, digits and dashes (``eu-west-1``, ``local``)."""


class NodeRole(StrEnum):
    ORCHESTRATOR = "orchestrator"
    PIPELINE = "pipeline"
    STORE = "store"


class NodeStatus(PeerModel):
    """A node as last seen: its health from its own endpoint and when that was."""

    node_id: NodeId
    role: NodeRole
    region: Region = "local"
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048)] | None = (
        None
    )
    state: HealthState
    version: Annotated[str, StringConstraints(max_length=64)] | None = None
    last_seen: UtcDatetime | None = None
    reason: Annotated[str, StringConstraints(max_length=512)] | None = None

    def age_seconds(self, now: datetime) -> float | None:
        """Seconds since the node was last seen, ``None`` if never."""
        return None if self.last_seen is None else (now - self.last_seen).total_seconds()


class ClusterTopology(PeerModel):
    """The nodes of a cluster at ``ts``; node ids are unique."""

    cluster_id: ClusterId
    nodes: tuple[NodeStatus, ...] = ()
    ts: UtcDatetime

    @model_validator(mode="after")
    def _unique_nodes(self) -> Self:
        ids = [node.node_id for node in self.nodes]
        duplicates = sorted({node_id for node_id in ids if ids.count(node_id) > 1})
        if duplicates:
            msg = f"duplicate node ids: {', '.join(duplicates)}"
            raise ValueError(msg)
        return self

    def by_role(self, role: NodeRole) -> tuple[NodeStatus, ...]:
        return tuple(node for node in self.nodes if node.role is role)

    def node(self, node_id: str) -> NodeStatus | None:
        return next((node for node in self.nodes if node.node_id == node_id), None)


@runtime_checkable
class FederationDirectory(Protocol):
    """Where a node learns its cluster's topology (a config file, an orchestrator's API)."""

    async def topology(self) -> ClusterTopology: ...

    async def node(self, node_id: NodeId) -> NodeStatus | None: ...

"""The cluster as this orchestrator sees it: configured peers and their health.

``TopologyWatcher`` polls every peer's ``/readyz`` (core ``HealthStatus``; a peer without
one, answering 404, is judged by its ``/healthz``) and keeps a core ``NodeStatus`` per
peer. A peer that answers is *seen* (``last_seen`` = now) and takes the state it reports;
a peer that does not answer keeps its previous ``last_seen`` and turns ``unhealthy`` with
the reason. ``topology()`` returns a core ``ClusterTopology`` (this node first), so the
watcher is a ``FederationDirectory``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import httpx
import structlog

from market_data_core import ClusterTopology, HealthState, NodeStatus
from market_data_core.exceptions import ConfigurationError
from market_data_orchestrator.deployment import PeerSpec
from market_data_orchestrator.watchers.polling import PollingWatcher
from market_data_orchestrator.watchers.store_health import (
    ClientFactory,
    ProbeResult,
    probe_readiness,
)

__all__ = ["TopologyWatcher"]

logger = structlog.get_logger(__name__)

SelfNode = NodeStatus | Callable[[], NodeStatus]


class TopologyWatcher(PollingWatcher):
    """Poll the peers of ``cluster_id`` and build its ``ClusterTopology``.

    ``self_node`` is this orchestrator's own status, or a function returning it (so its
    state follows the orchestrator's health). Drive it with ``await poll_once()`` or
    ``async with watcher:`` (polls every ``poll_interval`` seconds).
    """

    task_name = "topology"

    def __init__(
        self,
        cluster_id: str,
        self_node: SelfNode,
        peers: Iterable[PeerSpec],
        *,
        poll_interval: float = 5.0,
        timeout: float = 2.0,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cluster_id = cluster_id
        self.peers = tuple(peers)
        self._self_node = self_node
        ids = [self._own().node_id, *(peer.node_id for peer in self.peers)]
        if len(set(ids)) != len(ids):
            msg = f"node ids must be unique, got {ids}"
            raise ConfigurationError(msg)
        if poll_interval <= 0 or timeout <= 0:
            msg = f"poll_interval and timeout must be > 0, got {poll_interval}, {timeout}"
            raise ConfigurationError(msg)
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._client_factory = client_factory or httpx.AsyncClient
        self._client: httpx.AsyncClient | None = None
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._nodes: dict[str, NodeStatus] = {
            peer.node_id: self._unpolled(peer) for peer in self.peers
        }

    @staticmethod
    def _unpolled(peer: PeerSpec) -> NodeStatus:
        return NodeStatus(
            node_id=peer.node_id,
            role=peer.role,
            region=(peer.region or "local").lower(),
            url=peer.url,
            state=HealthState.UNHEALTHY,
            reason="not polled yet",
        )

    def add_peer(self, peer: PeerSpec) -> None:
        """Follow one more peer (from the next poll on); its id must be new."""
        if peer.node_id == self._own().node_id or peer.node_id in self._nodes:
            msg = f"node id {peer.node_id!r} is already in the topology"
            raise ConfigurationError(msg)
        self.peers = (*self.peers, peer)
        self._nodes[peer.node_id] = self._unpolled(peer)

    def remove_peer(self, node_id: str) -> None:
        """Stop following a peer; ``KeyError`` when there is none with that id."""
        if node_id not in self._nodes:
            raise KeyError(node_id)
        self.peers = tuple(peer for peer in self.peers if peer.node_id != node_id)
        del self._nodes[node_id]

    def _own(self) -> NodeStatus:
        return self._self_node() if callable(self._self_node) else self._self_node

    async def poll_once(self) -> ClusterTopology:
        """Poll every peer concurrently; return the new topology."""
        if self._client is None:
            self._client = self._client_factory()
        client = self._client
        results = await asyncio.gather(
            *(
                probe_readiness(client, peer.url, request_timeout=self.timeout)
                for peer in self.peers
            )
        )
        for peer, result in zip(self.peers, results, strict=True):
            self._nodes[peer.node_id] = self._judge(self._nodes[peer.node_id], result)
        return self.snapshot()

    def _judge(self, previous: NodeStatus, result: ProbeResult) -> NodeStatus:
        now = self._clock()
        if result.status is not None:  # it answered with a HealthStatus: seen
            return previous.model_copy(
                update={
                    "state": result.status.state,
                    "version": result.status.version,
                    "last_seen": now,
                    "reason": result.reason,
                }
            )
        if result.http_status == 404 and result.live:  # no /readyz: liveness is all it has
            return previous.model_copy(
                update={"state": HealthState.HEALTHY, "last_seen": now, "reason": None}
            )
        reason = (result.reason or "unhealthy")[:512]
        return previous.model_copy(
            update={
                "state": HealthState.UNHEALTHY,
                "last_seen": now if result.live else previous.last_seen,
                "reason": reason,
            }
        )

    def snapshot(self) -> ClusterTopology:
        """The topology as of the last poll (this node first, then the peers in order)."""
        nodes = (self._own(), *(self._nodes[peer.node_id] for peer in self.peers))
        return ClusterTopology(cluster_id=self.cluster_id, nodes=nodes, ts=self._clock())

    async def topology(self) -> ClusterTopology:
        return self.snapshot()

    async def node(self, node_id: str) -> NodeStatus | None:
        return self.snapshot().node(node_id)

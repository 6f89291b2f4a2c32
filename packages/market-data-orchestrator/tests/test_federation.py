"""The topology watcher: peers' real health endpoints, last-seen times, core contracts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from market_data_core import (
    ClusterTopology,
    FederationDirectory,
    HealthState,
    NodeRole,
    NodeStatus,
)
from market_data_core.exceptions import ConfigurationError
from market_data_core.testing import T0, make_health_status
from market_data_core.testing.servers import free_port, scaled
from market_data_orchestrator.deployment import PeerSpec
from market_data_orchestrator.federation import TopologyWatcher
from market_data_store.testing import StoreService

SELF = NodeStatus(node_id="orch-1", role=NodeRole.ORCHESTRATOR, state=HealthState.HEALTHY)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreService]:
    service = StoreService(tmp_path)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.mark.asyncio
async def test_real_store_peer_seen_then_lost(store: StoreService) -> None:
    clock = Clock()
    dead_url = f"http://127.0.0.1:{free_port()}"
    watcher = TopologyWatcher(
        "local",
        SELF,
        [
            PeerSpec(node_id="store-1", role=NodeRole.STORE, url=store.url, region="eu-west-1"),
            PeerSpec(node_id="pipe-1", role=NodeRole.PIPELINE, url=dead_url),
        ],
        clock=clock,
        timeout=scaled(10),
    )
    assert isinstance(watcher, FederationDirectory)
    try:
        topology = await watcher.poll_once()
        assert [n.node_id for n in topology.nodes] == ["orch-1", "store-1", "pipe-1"]
        peer = topology.node("store-1")
        assert peer is not None
        assert peer.state in (HealthState.HEALTHY, HealthState.DEGRADED)
        assert peer.last_seen == T0
        assert peer.version
        assert peer.region == "eu-west-1"
        assert peer.url == store.url
        never = topology.node("pipe-1")
        assert never is not None
        assert never.state is HealthState.UNHEALTHY
        assert never.last_seen is None
        assert never.reason == "connection refused on /readyz"

        await asyncio.to_thread(store.stop)
        clock.now = T0 + timedelta(seconds=30)
        topology = await watcher.poll_once()
        lost = topology.node("store-1")
        assert lost is not None
        assert lost.state is HealthState.UNHEALTHY
        assert lost.last_seen == T0  # kept from when it last answered
        assert lost.age_seconds(clock.now) == 30
        assert lost.reason == "connection refused on /readyz"
        assert lost.version == peer.version
        assert topology.ts == clock.now
        assert ClusterTopology.model_validate(topology.model_dump(mode="json")) == topology
        assert await watcher.topology() == topology
        assert await watcher.node("store-1") == lost
        assert await watcher.node("nope") is None
        assert [n.node_id for n in topology.by_role(NodeRole.STORE)] == ["store-1"]
    finally:
        await watcher.aclose()


def _client(routes: dict[str, httpx.Response]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return routes[f"{request.url.host}{request.url.path}"]

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.asyncio
async def test_states_from_health_endpoints() -> None:
    degraded = make_health_status(HealthState.DEGRADED, service="store").model_dump(mode="json")
    sick = make_health_status(HealthState.UNHEALTHY, service="store").model_dump(mode="json")
    routes = {
        "a.test/readyz": httpx.Response(200, json=degraded),
        "b.test/readyz": httpx.Response(503, json=sick),
        "c.test/readyz": httpx.Response(404, json={"detail": "Not Found"}),
        "c.test/healthz": httpx.Response(200, json={"status": "ok"}),
        "d.test/readyz": httpx.Response(200, text="not json"),
        "d.test/healthz": httpx.Response(200, json={"status": "ok"}),
        "b.test/healthz": httpx.Response(200, json={"status": "ok"}),
    }
    peers = [
        PeerSpec(node_id=name, role=NodeRole.PIPELINE, url=f"http://{name}.test") for name in "abcd"
    ]
    clock = Clock()
    watcher = TopologyWatcher(
        "c1", lambda: SELF, peers, clock=clock, client_factory=lambda: _client(routes)
    )
    topology = await watcher.poll_once()
    await watcher.aclose()
    states = {n.node_id: (n.state, n.last_seen) for n in topology.nodes}
    assert states == {
        "orch-1": (HealthState.HEALTHY, None),
        "a": (HealthState.DEGRADED, T0),
        "b": (HealthState.UNHEALTHY, T0),  # answered: seen, and says it is unhealthy
        "c": (HealthState.HEALTHY, T0),  # no /readyz: judged by liveness
        "d": (HealthState.UNHEALTHY, T0),  # alive but answers nonsense
    }
    d = topology.node("d")
    assert d is not None
    assert d.reason is not None
    assert "non-JSON" in d.reason


def test_before_the_first_poll_peers_are_unknown_unhealthy() -> None:
    peer = PeerSpec(node_id="s", role=NodeRole.STORE, url="http://store.test")
    topology = TopologyWatcher("c1", SELF, [peer]).snapshot()
    node = topology.node("s")
    assert node is not None
    assert (node.state, node.last_seen, node.reason) == (
        HealthState.UNHEALTHY,
        None,
        "not polled yet",
    )


def test_duplicate_node_ids_are_rejected() -> None:
    peer = PeerSpec(node_id="orch-1", role=NodeRole.ORCHESTRATOR, url="http://orch.test")
    with pytest.raises(ConfigurationError, match="unique"):
        TopologyWatcher("c1", SELF, [peer])

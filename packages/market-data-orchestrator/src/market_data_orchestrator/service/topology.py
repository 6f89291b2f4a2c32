"""The topology routes: the peers this node follows and their health (viewer); follow a
new peer or stop following one (admin, rate limited and audited)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request

from market_data_core import AuditOutcome, ClusterTopology, ConfigurationError
from market_data_core.api_errors import NOT_JSON, declared
from market_data_orchestrator.deployment import PeerSpec
from market_data_orchestrator.orchestrator import Orchestrator
from market_data_orchestrator.service.access import (
    LIMITED,
    ROLE,
    VIEWER,
    Admin,
    Viewer,
    audit_call,
    limit_calls,
)

__all__ = ["add_topology_routes"]


def add_topology_routes(app: FastAPI, orchestrator: Orchestrator) -> None:
    @app.get(
        "/v1/topology",
        response_model=ClusterTopology,
        summary="Peers and their health",
        responses=VIEWER,
    )
    async def topology(_: Viewer) -> ClusterTopology:
        return orchestrator.topology.snapshot()

    @app.post(
        "/v1/topology/peers",
        response_model=ClusterTopology,
        status_code=201,
        summary="Follow a new peer (admin)",
        responses={
            **NOT_JSON,
            **ROLE,
            **declared(409, "A node with that id exists"),
            **LIMITED,
        },
    )
    async def add_peer(peer: PeerSpec, request: Request, principal: Admin) -> ClusterTopology:
        limit_calls(orchestrator, request, principal)
        try:
            orchestrator.topology.add_peer(peer)
        except ConfigurationError as exc:  # audited as failed
            raise HTTPException(409, str(exc)) from exc
        await audit_call(orchestrator, request, principal, AuditOutcome.ALLOWED, peer.node_id)
        return orchestrator.topology.snapshot()

    @app.delete(
        "/v1/topology/peers/{node_id}",
        response_model=ClusterTopology,
        summary="Stop following a peer (admin)",
        responses={**ROLE, **declared(404, "No such peer"), **LIMITED},
    )
    async def remove_peer(node_id: str, request: Request, principal: Admin) -> ClusterTopology:
        limit_calls(orchestrator, request, principal)
        try:
            orchestrator.topology.remove_peer(node_id)
        except KeyError:  # audited as failed
            raise HTTPException(404, f"no peer {node_id!r}") from None
        await audit_call(orchestrator, request, principal, AuditOutcome.ALLOWED, node_id)
        return orchestrator.topology.snapshot()

from datetime import timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError

from market_data_core import (
    AuditEnvelope,
    Bar,
    ClusterTopology,
    ControlAction,
    ControlResult,
    EventEnvelope,
    EventMeta,
    NodeRole,
    NodeStatus,
    Track,
)
from market_data_core.testing import T0, make_audit, make_bar, make_topology


def test_control_result_ok_only_when_accepted() -> None:
    result = ControlResult(action="pause", target="job-1", status="accepted", ts=T0)
    assert result.ok
    assert result.action is ControlAction.PAUSE
    assert not result.model_copy(update={"status": "rejected"}).ok


def test_audit_envelope_has_unique_ids_and_round_trips() -> None:
    first, second = make_audit(), make_audit()
    assert isinstance(first.id, UUID)
    assert first.id != second.id
    assert AuditEnvelope.model_validate_json(first.model_dump_json()) == first
    with pytest.raises(ValidationError, match="result"):
        make_audit(result="maybe")
    with pytest.raises(ValidationError, match="actor"):
        make_audit(actor="")


def test_topology_lookups_and_unique_ids() -> None:
    topology = make_topology()
    assert [n.node_id for n in topology.by_role(NodeRole.STORE)] == ["store-1"]
    assert topology.node("pipe-1") is not None
    assert topology.node("ghost") is None
    dup = NodeStatus(node_id="store-1", role="store", state="healthy")
    with pytest.raises(ValidationError, match="duplicate node ids: store-1"):
        ClusterTopology(cluster_id="c", nodes=(*topology.nodes, dup), ts=T0)


def test_node_age_and_region() -> None:
    node = NodeStatus(node_id="n1", role="pipeline", state="healthy", last_seen=T0)
    assert node.age_seconds(T0 + timedelta(seconds=30)) == 30
    assert NodeStatus(node_id="n1", role="store", state="healthy").age_seconds(T0) is None
    with pytest.raises(ValidationError, match="region"):
        NodeStatus(node_id="n1", role="store", state="healthy", region="EU West")


def test_event_envelope_carries_a_typed_payload() -> None:
    envelope = EventEnvelope[Bar](
        key="AAPL",
        ts=T0,
        meta=EventMeta(schema_id="market_data.bar/v1", track="backfill"),
        payload=make_bar(),
    )
    again = EventEnvelope[Bar].model_validate_json(envelope.model_dump_json())
    assert again == envelope
    assert again.meta.track is Track.BACKFILL
    assert isinstance(again.payload, Bar)
    with pytest.raises(ValidationError, match="payload"):
        EventEnvelope[Bar].model_validate(
            {"key": "AAPL", "meta": {"schema_id": "x"}, "payload": {"symbol": 1}}
        )
    with pytest.raises(ValidationError, match="schema_id"):
        EventMeta(schema_id="Not A Schema")

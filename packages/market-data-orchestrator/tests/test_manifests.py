"""The Kubernetes manifests and the KEDA ScaledObject in docs/operations/k8s/ parse, point at
each other, run commands that exist, and scale on metrics the orchestrator really exports."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from market_data_orchestrator.metrics import OrchestratorMetrics

K8S = Path(__file__).resolve().parents[3] / "docs" / "operations" / "k8s"


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _documents() if d["kind"] == kind]


def test_every_manifest_has_the_basics() -> None:
    documents = _documents()
    assert {d["kind"] for d in documents} >= {"Deployment", "Service", "ScaledObject"}
    for document in documents:
        assert document["apiVersion"]
        assert document["metadata"]["name"]


def test_deployments_select_their_pods_and_services_select_deployments() -> None:
    deployments = {d["metadata"]["name"]: d for d in _by_kind("Deployment")}
    assert set(deployments) == {
        "market-data-store",
        "market-data-pipeline",
        "market-data-orchestrator",
    }
    for deployment in deployments.values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    for service in _by_kind("Service"):
        assert any(
            service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in deployments.values()
        )


@pytest.mark.parametrize(
    ("deployment", "module", "command"),
    [
        ("market-data-store", "market_data_store.cli", "serve"),
        ("market-data-pipeline", "market_data_pipeline.cli", "run"),
        ("market-data-orchestrator", "market_data_orchestrator.cli", "serve"),
    ],
)
def test_containers_run_commands_that_exist(deployment: str, module: str, command: str) -> None:
    import importlib

    (spec,) = [d for d in _by_kind("Deployment") if d["metadata"]["name"] == deployment]
    args = spec["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[1] == command
    app = importlib.import_module(module).app
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert command in names


def test_the_scaled_object_scales_the_pipeline_on_exported_metrics() -> None:
    (scaled,) = _by_kind("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]["name"]
    assert target in {d["metadata"]["name"] for d in _by_kind("Deployment")}
    exported = {
        metric.name for metric in OrchestratorMetrics(CollectorRegistry()).registry.collect()
    }
    for trigger in scaled["spec"]["triggers"]:
        used = set(re.findall(r"\b(orchestrator_[a-z_]+)\b", trigger["metadata"]["query"]))
        assert used, trigger
        assert used <= exported, f"{used - exported} are not exported by the orchestrator"


def test_secrets_come_from_secret_refs_not_literals() -> None:
    for deployment in _by_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if any(word in env["name"] for word in ("URL", "TOKEN")) and "value" in env:
                    assert env["value"].startswith("http://market-data-"), env

"""The Kubernetes manifests and the KEDA ScaledObjects in docs/operations/k8s/ parse, point at
each other, run commands that exist, give each partition stream one worker that never runs
twice, scale each worker on its own stream's lag, and keep Redis' data (AOF on a volume)."""

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    assert {d["kind"] for d in documents} >= {
        "ConfigMap",
        "Deployment",
        "Service",
        "ScaledObject",
        "TriggerAuthentication",
    }
    for document in documents:
        assert document["apiVersion"]
        assert document["metadata"]["name"]


def _workers() -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d
        for d in _by_kind("Deployment")
        if d["metadata"]["name"].startswith("market-data-pipeline")
    }


def test_deployments_select_their_pods_and_services_select_deployments() -> None:
    deployments = {d["metadata"]["name"]: d for d in _by_kind("Deployment")}
    assert set(deployments) == {"market-data-store", "market-data-orchestrator", *_workers()}
    for deployment in deployments.values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    for name, deployment in deployments.items():  # no selector takes another's pods
        selector = deployment["spec"]["selector"]["matchLabels"]
        for other, theirs in deployments.items():
            labels = theirs["spec"]["template"]["metadata"]["labels"]
            assert other == name or not selector.items() <= labels.items(), (name, other)
    workloads = [*deployments.values(), *_by_kind("StatefulSet")]
    for service in _by_kind("Service"):
        assert any(
            service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in workloads
        ), service["metadata"]["name"]


@pytest.mark.parametrize(
    ("prefix", "module", "command"),
    [
        ("market-data-store", "market_data_store.cli", "serve"),
        ("market-data-pipeline", "market_data_pipeline.cli", "run"),
        ("market-data-orchestrator", "market_data_orchestrator.cli", "serve"),
    ],
)
def test_containers_run_commands_that_exist(prefix: str, module: str, command: str) -> None:
    import importlib

    specs = [d for d in _by_kind("Deployment") if d["metadata"]["name"].startswith(prefix)]
    assert specs
    app = importlib.import_module(module).app
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    for spec in specs:
        args = spec["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[1] == command
        assert command in names


def _env(deployment: dict[str, Any]) -> dict[str, str | None]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _worker_graph(deployment: dict[str, Any]) -> Any:
    """The graph a worker Deployment runs: its ConfigMap's config, for its partitions."""
    from market_data_pipeline.graph import parse_graph

    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    (config_map,) = [
        c for c in _by_kind("ConfigMap") if c["metadata"]["name"] == volume["configMap"]["name"]
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (mount,) = container["volumeMounts"]
    path = container["args"][2]
    assert path.startswith(mount["mountPath"] + "/"), f"{path} is not in the mounted ConfigMap"
    text = config_map["data"][path.removeprefix(mount["mountPath"] + "/")]
    partitions = [int(p) for p in str(_env(deployment)["MDP_PARTITIONS"]).split(",")]
    return parse_graph(text, source=path).for_partitions(partitions)


def _streams(graph: Any) -> list[tuple[str, str]]:
    return [
        (n.params["stream"], n.params.get("group", "md-pipeline"))
        for n in graph.nodes
        if n.type == "redis_stream" and "group" in n.params
    ]


def test_each_partition_stream_has_one_worker_that_never_runs_twice() -> None:
    """A resampler must see every tick of its symbols: each partition's stream is read by
    one Deployment of one replica at most (KEDA's maximum), replaced with Recreate (a
    rolling update would run two readers), and the Deployments cover partitions 0..P-1."""
    from market_data_pipeline.registry import default_registry

    workers = _workers()
    assert len(workers) >= 2, "one worker Deployment per partition"
    read: dict[str, str] = {}
    partitions = []
    for name, deployment in workers.items():
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}, name
        assert deployment["spec"]["replicas"] <= 1, name
        partitions.append(int(str(_env(deployment)["MDP_PARTITIONS"])))
        graph = _worker_graph(deployment)
        graph.validated(default_registry())
        for stream, _group in _streams(graph):
            assert stream not in read, f"{name} and {read.get(stream)} both read {stream}"
            read[stream] = name
    assert sorted(partitions) == list(range(len(workers)))
    assert len(read) == len(workers)


def test_each_partition_scales_on_its_own_streams_lag() -> None:
    scaled_objects = _by_kind("ScaledObject")
    workers = _workers()
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled_objects} == set(workers)
    authentications = {a["metadata"]["name"]: a for a in _by_kind("TriggerAuthentication")}
    for scaled in scaled_objects:
        name = scaled["spec"]["scaleTargetRef"]["name"]
        assert scaled["spec"]["maxReplicaCount"] == 1, f"{name}: one reader per stream"
        ((stream, group),) = _streams(_worker_graph(workers[name]))
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "redis-streams"
        assert trigger["metadata"]["stream"] == stream, name
        assert trigger["metadata"]["consumerGroup"] == group, name
        assert int(trigger["metadata"]["lagCount"]) >= 1  # the group's lag, not XPENDING
        auth = authentications[trigger["authenticationRef"]["name"]]
        keys = {ref["key"] for ref in auth["spec"]["secretTargetRef"]}
        readme = (K8S.parent / "README.md").read_text()
        for key in keys:
            assert key in readme, f"docs/operations/README.md does not say to create {key}"


def test_secrets_come_from_secret_refs_not_literals() -> None:
    for workload in [*_by_kind("Deployment"), *_by_kind("StatefulSet")]:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if (
                    any(word in env["name"] for word in ("URL", "TOKEN", "PASSWORD"))
                    and "value" in env
                ):
                    assert env["value"].startswith("http://market-data-"), env
            args = container.get("args", [])
            for flag, value in itertools.pairwise(args):
                if flag == "--requirepass":
                    assert value.startswith("$("), "a password literal in args"


def _flags(args: list[str]) -> dict[str, str]:
    return {flag: value for flag, value in itertools.pairwise(args) if flag[:2] == "--"}


def test_redis_keeps_its_data_on_a_volume_with_the_append_only_file_on() -> None:
    """The workers lose no tick when Redis restarts only if Redis persists what it
    acknowledged (docs/pipeline.md): one StatefulSet, the AOF on (fsync always or every
    second), its --dir on a PersistentVolumeClaim, behind the Service the Secret's
    redis-address names."""
    (redis,) = [s for s in _by_kind("StatefulSet") if s["metadata"]["name"] == "redis"]
    assert redis["spec"]["replicas"] == 1
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "redis-server"
    flags = _flags(container["args"])
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] in {"always", "everysec"}
    claims = {c["metadata"]["name"] for c in redis["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert flags["--dir"] in {mounts[name] for name in claims & set(mounts)}
    services = [s for s in _by_kind("Service") if s["metadata"]["name"] == "redis"]
    assert services, "no Service named redis"
    assert redis["spec"]["serviceName"] == "redis"
    port = services[0]["spec"]["ports"][0]["port"]
    readme = (K8S.parent / "README.md").read_text()
    assert f"redis-address=redis:{port}" in readme

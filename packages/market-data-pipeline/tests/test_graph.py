"""The graph description and its config loader: errors name the node and the line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from market_data_core.testing.servers import scaled
from market_data_pipeline.exceptions import GraphError, UnknownComponentError
from market_data_pipeline.graph import Graph, Mode, edge, load_graph, node, parse_graph
from market_data_pipeline.testing import registry_with_fakes

REGISTRY = registry_with_fakes()


def _check(text: str) -> Graph:
    graph = parse_graph(text, source="job.yaml")
    graph.validated(REGISTRY)
    return graph


def test_a_valid_dag_is_ordered_topologically() -> None:
    graph = _check(
        """
name: demo
nodes:
  - {id: sink, type: collect}
  - {id: m, type: merge}
  - {id: a, type: testing_provider, params: {name: a}}
  - {id: b, type: testing_provider, params: {name: b}}
edges:
  - a -> m
  - {from: b, to: m}
  - m -> sink
"""
    )
    order = graph.validated(REGISTRY).order
    assert order.index("m") > max(order.index("a"), order.index("b"))
    assert order[-1] == "sink"
    assert graph.mode is Mode.DAG


def test_unknown_type_names_node_and_line() -> None:
    with pytest.raises(UnknownComponentError) as info:
        _check(
            """
nodes:
  - {id: a, type: testing_provider, params: {name: a}}
  - id: bars
    type: resample_ohcl
edges: [a -> bars]
"""
        )
    message = str(info.value)
    assert "job.yaml:4" in message
    assert "'bars'" in message
    assert "resample_ohcl" in message
    assert "resample_ohlc" in message  # the known names help spot the typo


def test_bad_params_name_the_field_and_line() -> None:
    with pytest.raises(GraphError) as info:
        _check(
            """
nodes:
  - {id: a, type: testing_provider, params: {name: a, delay: soon}}
  - {id: out, type: collect}
edges: [a -> out]
"""
        )
    assert "job.yaml:3" in str(info.value)
    assert "params.delay" in str(info.value)
    assert info.value.node_id == "a"


def test_missing_required_param_is_named() -> None:
    with pytest.raises(GraphError, match=r"params\.name: Field required"):
        _check(
            """
nodes:
  - {id: a, type: testing_provider}
  - {id: out, type: collect}
edges: [a -> out]
"""
        )


def test_dangling_edge_names_the_unknown_node_and_line() -> None:
    with pytest.raises(GraphError, match=r"job\.yaml:6.*unknown node 'nowhere'"):
        _check(
            """
nodes:
  - {id: a, type: testing_provider, params: {name: a}}
  - {id: out, type: collect}
edges:
  - {from: a, to: nowhere}
  - a -> out
"""
        )


def test_cycles_are_rejected_naming_a_node_on_the_cycle() -> None:
    graph = Graph.build(
        [
            node("a", "testing_provider", name="a"),
            node("m1", "merge"),
            node("m2", "merge"),
            node("out", "collect"),
        ],
        ["a -> m1", "m1 -> m2", "m2 -> m1", "m2 -> out"],
    )
    with pytest.raises(GraphError, match=r"has a cycle: m1 -> m2 -> m1$") as info:
        graph.validated(REGISTRY)
    assert info.value.node_id == "m1"


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        (["a -> m1", "m1 -> m1", "m1 -> out", "a -> m2", "m2 -> m3", "m3 -> out"], "m1 -> m1"),
        (["a -> m1", "m1 -> m2", "m2 -> m3", "m3 -> m2", "m3 -> out"], "m2 -> m3 -> m2"),
        (["a -> m3", "m3 -> m1", "m1 -> m2", "m2 -> m3", "m2 -> out"], "m1 -> m2 -> m3 -> m1"),
    ],
)
def test_the_cycle_error_names_the_cycle_and_nothing_else(edges: list[str], cycle: str) -> None:
    graph = Graph.build(
        [
            node("a", "testing_provider", name="a"),
            node("m1", "merge"),
            node("m2", "merge"),
            node("m3", "merge"),
            node("out", "collect"),
        ],
        edges,
    )
    with pytest.raises(GraphError, match=rf"has a cycle: {cycle}$"):
        graph.validated(REGISTRY)


TWO_CYCLES = """\
name: cycles
nodes:
{nodes}
edges: [{edges}]
"""
DISJOINT = (  # x1 <-> x2 and y1 <-> y2; the feed's first edge goes to y1
    "feed -> y1, y1 -> y2, y2 -> y1, y2 -> out, feed -> x1, x1 -> x2, x2 -> x1, x2 -> out"
)
OVERLAPPING = (  # b -> c -> b and b -> c -> a -> b: c's first edge goes back to b
    "feed -> b, a -> b, b -> c, c -> b, c -> a, a -> out"
)


def _cycles_config(order: list[str], edges: str, types: dict[str, str]) -> str:
    """A config listing the nodes in ``order`` (``types``: each node's component type)."""
    lines = [f"  - {{id: {name}, type: {types.get(name, 'merge')}}}" for name in order]
    return TWO_CYCLES.format(nodes="\n".join(lines), edges=edges)


FAKES = {"feed": "testing_provider, params: {name: feed}", "out": "collect"}


@pytest.mark.parametrize(
    ("order", "edges", "cycle"),
    [
        # from the first listed node along the edges in config order: the feed reaches y first
        (["feed", "x1", "x2", "y1", "y2", "out"], DISJOINT, "y1 -> y2 -> y1"),
        # the first listed node is on the x cycle: that one is met first
        (["x2", "x1", "feed", "y1", "y2", "out"], DISJOINT, "x2 -> x1 -> x2"),
        (["y2", "x1", "x2", "feed", "y1", "out"], DISJOINT, "y2 -> y1 -> y2"),
        # the sink first: nothing leaves it; the search goes on with x2, then its cycle
        (["out", "x2", "x1", "y1", "y2", "feed"], DISJOINT, "x2 -> x1 -> x2"),
        # overlapping: feed -> b -> c, whose first edge closes b -> c -> b
        (["feed", "a", "b", "c", "out"], OVERLAPPING, "b -> c -> b"),
        # from a: a -> b -> c, whose first edge closes b -> c -> b too
        (["a", "feed", "b", "c", "out"], OVERLAPPING, "b -> c -> b"),
    ],
)
def test_of_several_cycles_the_error_names_the_first_one_reached(
    order: list[str], edges: str, cycle: str
) -> None:
    """The cycle a depth-first search meets first, starting from the first node the config
    lists and following the edges in the order the config lists them; it is written from
    its node listed first."""
    graph = parse_graph(_cycles_config(order, edges, FAKES), source="job.yaml")
    with pytest.raises(GraphError, match=rf"has a cycle: {cycle}$") as info:
        graph.validated(REGISTRY)
    head = cycle.partition(" ")[0]
    assert info.value.node_id == head
    assert info.value.line == 3 + order.index(head)


@pytest.mark.parametrize(
    ("order", "edges", "cycle"),
    [
        (["feed", "x1", "x2", "y1", "y2", "out"], DISJOINT, "y1 -> y2 -> y1"),
        (["feed", "a", "b", "c", "out"], OVERLAPPING, "b -> c -> b"),
    ],
)
def test_the_cycle_named_is_the_same_whatever_the_hash_seed(
    tmp_path: Path, order: list[str], edges: str, cycle: str
) -> None:
    """``mdp validate`` in fresh interpreters with different string hashes (set and dict
    order of the node ids change with PYTHONHASHSEED) names the same cycle every time."""
    config = tmp_path / "cycles.yaml"
    real = {"feed": "synthetic, params: {count: 10}", "out": "'null'"}
    config.write_text(_cycles_config(order, edges, real))
    command = [sys.executable, "-m", "market_data_pipeline.cli", "validate", str(config)]
    runs = {
        seed: subprocess.Popen(
            command,
            env={**os.environ, "PYTHONHASHSEED": str(seed), "COLUMNS": "300"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in range(12)
    }
    said = {}
    try:
        for seed, process in runs.items():
            output, _ = process.communicate(timeout=scaled(120))
            assert process.returncode == 2, output
            said[seed] = " ".join(output.split())
    finally:  # a failure leaves no child running (and no pipe open) for the next test
        for process in runs.values():
            if process.poll() is None:
                process.kill()
            process.communicate()
    head = cycle.partition(" ")[0]
    line = 3 + order.index(head)
    expected = f"error: {config}:{line}, node '{head}': the graph has a cycle: {cycle}"
    assert set(said.values()) == {expected}, said


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        (["a -> out", "out -> m", "m -> out"], "leaves a sink"),
        (["a -> out", "m -> a"], "enters a provider"),
        (["a -> out"], "node 'm': this operator has no input edge"),
        (["a.late -> m", "m -> out"], "has no output 'late'"),
    ],
)
def test_structure_errors(edges: list[str], message: str) -> None:
    graph = Graph.build(
        [node("a", "testing_provider", name="a"), node("m", "merge"), node("out", "collect")],
        edges,
    )
    with pytest.raises(GraphError, match=message):
        graph.validated(REGISTRY)


def test_operator_without_output_must_end_in_a_sink() -> None:
    graph = Graph.build(
        [node("a", "testing_provider", name="a"), node("m", "merge"), node("out", "collect")],
        ["a -> m", "a -> out"],
    )
    with pytest.raises(GraphError, match="node 'm': this operator has no output edge"):
        graph.validated(REGISTRY)


def test_duplicate_ids_and_bad_ids() -> None:
    with pytest.raises(GraphError, match="duplicate node id 'a'"):
        Graph.build(
            [node("a", "testing_provider", name="a"), node("a", "collect")], ["a -> a"]
        ).validated(REGISTRY)
    with pytest.raises(GraphError, match=r"job\.yaml:3.*must match"):
        _check("nodes:\n  - {id: a, type: collect}\n  - {id: 'has space', type: collect}\n")


def test_classic_mode_builds_the_same_chain() -> None:
    graph = _check(
        """
name: linear
source: {type: testing_provider, params: {name: x}}
operators:
  - {type: merge}
  - {id: second, type: merge}
batcher: {max_rows: 10}
sink: {type: collect}
"""
    )
    assert graph.mode is Mode.CLASSIC
    assert [n.id for n in graph.nodes] == ["source", "op1", "second", "batcher", "sink"]
    assert [str(e) for e in graph.edges] == [
        "source -> op1",
        "op1 -> second",
        "second -> batcher",
        "batcher -> sink",
    ]


def test_classic_mode_errors_name_the_line() -> None:
    with pytest.raises(GraphError, match=r"job\.yaml:5.*nonesuch"):
        _check(
            """
source: {type: testing_provider, params: {name: x}}
operators:
  - {type: merge}
  - {type: nonesuch}
sink: {type: collect}
"""
        )


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("nodes:\n  - {id: a, type: collect\n  - {id: b}\nedges: []\n")
    with pytest.raises(GraphError) as caught:
        load_graph(path)
    message = str(caught.value)
    assert "\n" not in message  # one line, not PyYAML's marks and carets
    assert message == (
        f"{path}:3: not valid YAML/JSON: expected ',' or '}}', but got '{{' (column 5)"
    )


def test_yaml_syntax_errors_in_a_settings_file_are_one_line_too(tmp_path: Path) -> None:
    from market_data_pipeline.settings import UnifiedRuntimeSettings

    path = tmp_path / "settings.yaml"
    path.write_text("log_level: info\nstore: [unclosed\n")
    with pytest.raises(GraphError) as caught:
        UnifiedRuntimeSettings.load(path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{path}:")


def test_a_node_without_an_id_says_it_is_missing() -> None:
    with pytest.raises(GraphError) as caught:
        parse_graph("nodes:\n  - {type: collect}\nedges: []\n", source="c.yaml")
    assert str(caught.value) == "c.yaml:2: id: missing: every node needs an id and a type"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match=r"nope\.yaml: cannot read"):
        load_graph(tmp_path / "nope.yaml")


def test_json_configs_load_too(tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(
        '{"nodes": [{"id": "a", "type": "testing_provider", "params": {"name": "a"}},'
        ' {"id": "out", "type": "collect"}], "edges": ["a -> out"]}'
    )
    assert load_graph(path).validated(REGISTRY).order == ("a", "out")


def test_edges_parse_ports() -> None:
    e = edge("w.late -> late_sink")
    assert (e.source, e.port, e.target) == ("w", "late", "late_sink")
    with pytest.raises(GraphError, match="is not 'source -> target'"):
        edge("a => b")


def test_to_config_round_trips() -> None:
    graph = Graph.build(
        [node("a", "testing_provider", name="a"), node("out", "collect")], ["a -> out"], name="rt"
    )
    again = parse_graph(__import__("json").dumps(graph.to_config()))
    assert [n.model_dump() for n in again.nodes] == [n.model_dump() for n in graph.nodes]
    assert [str(e) for e in again.edges] == [str(e) for e in graph.edges]


def test_a_name_shared_by_a_provider_and_a_sink_resolves_by_role() -> None:
    from market_data_pipeline.providers.redis_stream import RedisStreamProvider
    from market_data_pipeline.sinks.redis_stream import RedisStreamSink

    graph = Graph.build(
        [
            node("src", "redis_stream", url="redis://127.0.0.1:1", stream="in", group="g"),
            node("out", "redis_stream", url="redis://127.0.0.1:1", stream="out"),
        ],
        ["src -> out"],
    ).validated(REGISTRY)
    assert isinstance(graph.components["src"], RedisStreamProvider)
    assert isinstance(graph.components["out"], RedisStreamSink)

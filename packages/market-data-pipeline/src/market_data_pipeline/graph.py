"""The graph: a frozen, validated description of a pipeline. The runtime executes it.

A graph is nodes (id, component type, params) and edges (``source[.port] -> target``).
Build one from Python (:func:`node`, :meth:`Graph.build`) or from a YAML/JSON file
(:func:`load_graph`), in DAG form or in classic form (a linear ``source -> operators ->
batcher -> sink`` spec that builds the same graph). :meth:`Graph.validated` checks it
against a registry before anything runs: unknown types, bad params, dangling edges,
unknown ports and cycles fail with a :class:`GraphError` naming the node and the line.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from market_data_pipeline._kinds import ComponentKind
from market_data_pipeline.exceptions import GraphError

if TYPE_CHECKING:
    from market_data_pipeline.compile import ValidatedGraph
    from market_data_pipeline.registry import Registry

__all__ = [
    "EdgeSpec",
    "Graph",
    "LinearSpec",
    "Mode",
    "NodeSpec",
    "ValidatedGraph",
    "edge",
    "load_graph",
    "node",
    "parse_graph",
]

NODE_ID: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_EDGE: Final = re.compile(
    r"^\s*(?P<source>[A-Za-z_][A-Za-z0-9_\-]*)(?:\.(?P<port>[A-Za-z0-9_\-]+))?"
    r"\s*->\s*(?P<target>[A-Za-z_][A-Za-z0-9_\-]*)\s*$"
)
_LINE: Final = "__line__"


class Mode(StrEnum):
    """How the graph was described: ``dag`` (nodes and edges) or ``classic`` (linear)."""

    DAG = "dag"
    CLASSIC = "classic"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeSpec(_Spec):
    """One node: a unique id, a registered component type and its params."""

    id: str
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    line: int | None = Field(default=None, exclude=True, description="Line in the config file.")

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: object) -> object:
        if value is None:
            msg = (
                "is empty: YAML reads a bare null (or ~) as no value; quote the name of the"
                " null sink: type: 'null'"
            )
            raise ValueError(msg)
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not NODE_ID.match(value):
            msg = f"node id {value!r} must match {NODE_ID.pattern}"
            raise ValueError(msg)
        return value


class EdgeSpec(_Spec):
    """Batches from ``source``'s output ``port`` go to ``target``."""

    source: str
    target: str
    port: str = "out"
    line: int | None = Field(default=None, exclude=True)

    def __str__(self) -> str:
        port = "" if self.port == "out" else f".{self.port}"
        return f"{self.source}{port} -> {self.target}"


def node(id: str, type: str, /, **params: Any) -> NodeSpec:
    """A node for :meth:`Graph.build`: ``node("bars", "resample_ohlc", timeframe="1m")``."""
    return NodeSpec(id=id, type=type, params=params)


def edge(text: str, *, line: int | None = None) -> EdgeSpec:
    """An edge from ``"source -> target"`` or ``"source.port -> target"``."""
    match = _EDGE.match(text)
    if match is None:
        raise GraphError(
            f"edge {text!r} is not 'source -> target' or 'source.port -> target'", line=line
        )
    return EdgeSpec(
        source=match["source"], target=match["target"], port=match["port"] or "out", line=line
    )


class Graph(_Spec):
    """A pipeline description. Structure is checked here; components by :meth:`validated`."""

    name: str = "pipeline"
    mode: Mode = Mode.DAG
    nodes: tuple[NodeSpec, ...]
    edges: tuple[EdgeSpec, ...] = ()
    source: str | None = Field(default=None, exclude=True, description="The config file.")

    @classmethod
    def build(
        cls,
        nodes: Iterable[NodeSpec],
        edges: Iterable[EdgeSpec | str],
        *,
        name: str = "pipeline",
    ) -> Self:
        return cls(
            name=name,
            nodes=tuple(nodes),
            edges=tuple(e if isinstance(e, EdgeSpec) else edge(e) for e in edges),
        )

    def node(self, node_id: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.id == node_id:
                return spec
        raise KeyError(node_id)

    def error(self, message: str, spec: NodeSpec | EdgeSpec | None = None) -> GraphError:
        node_id = spec.id if isinstance(spec, NodeSpec) else None
        line = spec.line if spec is not None else None
        return GraphError(message, node_id=node_id, source=self.source, line=line)

    def validated(self, registry: Registry | None = None) -> ValidatedGraph:
        """Check everything that can be checked before running; return the runnable form
        (see :func:`market_data_pipeline.compile.compile_graph`)."""
        from market_data_pipeline.compile import compile_graph  # noqa: PLC0415

        return compile_graph(self, registry)

    def unique_ids(self) -> set[str]:
        """The node ids; a ``GraphError`` for a duplicate or an empty graph."""
        seen: set[str] = set()
        for spec in self.nodes:
            if spec.id in seen:
                raise self.error(f"duplicate node id {spec.id!r}", spec)
            seen.add(spec.id)
        if not seen:
            raise self.error("the graph has no nodes")
        return seen

    def check_connected(self, kinds: Mapping[str, ComponentKind]) -> None:
        """A ``GraphError`` unless there is a provider and every node is connected as its
        kind requires (inputs for operators and sinks, outputs for providers and operators)."""
        targets = {e.target for e in self.edges}
        sources = {e.source for e in self.edges}
        if not any(kind is ComponentKind.PROVIDER for kind in kinds.values()):
            raise self.error("the graph has no provider: nothing would produce records")
        for spec in self.nodes:
            kind = kinds[spec.id]
            if kind is not ComponentKind.PROVIDER and spec.id not in targets:
                raise self.error(f"this {kind} has no input edge", spec)
            if kind is not ComponentKind.SINK and spec.id not in sources:
                raise self.error(f"this {kind} has no output edge (end it in a sink)", spec)

    def topological_order(self) -> tuple[str, ...]:
        """The node ids, each after its inputs; a ``GraphError`` naming a cycle."""
        incoming = {spec.id: 0 for spec in self.nodes}
        children: dict[str, list[str]] = {spec.id: [] for spec in self.nodes}
        for e in self.edges:
            incoming[e.target] += 1
            children[e.source].append(e.target)
        ready = [node_id for node_id, n in incoming.items() if n == 0]
        order: list[str] = []
        while ready:
            current = ready.pop(0)
            order.append(current)
            for child in children[current]:
                incoming[child] -= 1
                if incoming[child] == 0:
                    ready.append(child)
        if len(order) < len(self.nodes):
            ids = [spec.id for spec in self.nodes]
            cycle = _first_cycle(ids, children)
            head = min(cycle, key=ids.index)  # from the node the config names first
            turn = cycle.index(head)
            cycle = [*cycle[turn:-1], *cycle[:turn], head]
            (first,) = [spec for spec in self.nodes if spec.id == cycle[0]]
            raise self.error(f"the graph has a cycle: {' -> '.join(cycle)}", first)
        return tuple(order)

    @property
    def partitioned(self) -> bool:
        """Whether a param of some node holds the ``{partition}`` placeholder."""
        return any(_mentions_partition(spec.params) for spec in self.nodes)

    def for_partitions(self, partitions: Sequence[int]) -> Graph:
        """One copy of the graph per partition, side by side in one graph: in copy ``p``
        every node id gets the suffix ``-p<p>`` and ``{partition}`` in its params becomes
        ``p`` (``stream: "ticks:{partition}"``). The copies share nothing but the process,
        so each keeps its own windows and watermark: a worker that owns partitions 0 and 3
        makes the bars of each exactly as two workers would (Kafka Streams' tasks)."""
        if not partitions:
            raise GraphError("no partitions given", source=self.source)
        if len(set(partitions)) != len(partitions) or min(partitions) < 0:
            raise GraphError(
                f"partitions must be distinct and >= 0, got {list(partitions)}", source=self.source
            )
        if not self.partitioned:
            raise GraphError(
                "partitions were given but no node param holds {partition}: every copy would"
                " read and write the same place (e.g. stream: ticks:{partition})",
                source=self.source,
            )
        nodes: list[NodeSpec] = []
        edges: list[EdgeSpec] = []
        for p in sorted(partitions):
            for spec in self.nodes:
                copy_id = f"{spec.id}-p{p}"
                if not NODE_ID.match(copy_id):
                    raise self.error(
                        f"node id {copy_id!r} (partition {p}'s copy) must match {NODE_ID.pattern}",
                        spec,
                    )
                params = _with_partition(spec.params, p)
                nodes.append(spec.model_copy(update={"id": copy_id, "params": params}))
            edges.extend(
                e.model_copy(update={"source": f"{e.source}-p{p}", "target": f"{e.target}-p{p}"})
                for e in self.edges
            )
        return self.model_copy(update={"nodes": tuple(nodes), "edges": tuple(edges)})

    def check_unpartitioned(self) -> None:
        """Refuse to run a graph that holds ``{partition}`` as it is (no partitions given)."""
        for spec in self.nodes:
            if _mentions_partition(spec.params):
                raise self.error(
                    "its params hold {partition}: give the partitions this worker owns"
                    " (mdp run --partitions 0,1 or MDP_PARTITIONS)",
                    spec,
                )

    def to_config(self) -> dict[str, Any]:
        """The graph as a DAG config mapping (what :func:`parse_graph` reads back)."""
        return {
            "name": self.name,
            "nodes": [
                {"id": s.id, "type": s.type, **({"params": s.params} if s.params else {})}
                for s in self.nodes
            ],
            "edges": [str(e) for e in self.edges],
        }


def _first_cycle(ids: Sequence[str], children: Mapping[str, list[str]]) -> list[str]:
    """The cycle a depth-first search meets first, as node ids along its edges with the
    first repeated at the end (``a -> a``, ``a -> b -> a``). The search starts from the
    first node the config lists, then from each next one not yet reached, and follows each
    node's edges in the order the config lists them: the same graph gives the same cycle in
    every run, whatever the hash seed (no set or hash order decides)."""
    done: set[str] = set()
    for start in ids:
        if start in done:
            continue
        path = [start]
        places = {start: 0}  # position of each node of the path
        pending = [iter(children[start])]
        while pending:
            child = next(pending[-1], None)
            if child is None:
                pending.pop()
                finished = path.pop()
                del places[finished]
                done.add(finished)
            elif child in places:
                return [*path[places[child] :], child]
            elif child not in done:
                places[child] = len(path)
                path.append(child)
                pending.append(iter(children[child]))
    msg = "no cycle found in a graph a topological sort could not order"
    raise AssertionError(msg)


PARTITION: Final = "{partition}"


def _mentions_partition(value: Any) -> bool:
    if isinstance(value, str):
        return PARTITION in value
    if isinstance(value, Mapping):
        return any(_mentions_partition(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_mentions_partition(v) for v in value)
    return False


def _with_partition(value: Any, partition: int) -> Any:
    if isinstance(value, str):
        return value.replace(PARTITION, str(partition))
    if isinstance(value, Mapping):
        return {k: _with_partition(v, partition) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_with_partition(v, partition) for v in value]
    return value


class _Stage(_Spec):
    id: str | None = None
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    line: int | None = Field(default=None, exclude=True)


class LinearSpec(_Spec):
    """Classic mode: ``source -> operators... -> batcher -> sink``, built as a graph."""

    name: str = "pipeline"
    source: _Stage
    operators: tuple[_Stage, ...] = ()
    batcher: dict[str, Any] | None = Field(
        default=None, description="Params of a `buffer` node before the sink (size/time batching)."
    )
    sink: _Stage

    def to_graph(self, *, source_file: str | None = None) -> Graph:
        stages: list[NodeSpec] = [_stage_node(self.source, "source")]
        stages += [_stage_node(op, f"op{i}") for i, op in enumerate(self.operators, start=1)]
        if self.batcher is not None:
            stages.append(NodeSpec(id="batcher", type="buffer", params=self.batcher))
        stages.append(_stage_node(self.sink, "sink"))
        edges = [
            EdgeSpec(source=a.id, target=b.id, line=b.line) for a, b in itertools.pairwise(stages)
        ]
        return Graph(
            name=self.name,
            mode=Mode.CLASSIC,
            nodes=tuple(stages),
            edges=tuple(edges),
            source=source_file,
        )


def _stage_node(stage: _Stage, default_id: str) -> NodeSpec:
    return NodeSpec(
        id=stage.id or default_id, type=stage.type, params=stage.params, line=stage.line
    )


# -- config files --------------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's line as ``__line__``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[_LINE] = node.start_mark.line + 1
        return mapping


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != _LINE}
    if isinstance(value, list):
        return [_strip_lines(v) for v in value]
    return value


def load_graph(path: str | Path) -> Graph:
    """Read a graph from a YAML or JSON file (DAG or classic form); errors name the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise GraphError(f"cannot read the config: {error.strerror}", source=str(path)) from None
    return parse_graph(text, source=str(path))


def yaml_error(error: yaml.YAMLError, source: str) -> GraphError:
    """PyYAML's multi-line complaint as one line: what is wrong, at the file's line (and
    column): ``config.yaml:4: not valid YAML/JSON: expected ',' or '}', but got '{'
    (column 5)``."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "context", None)
    what = " ".join(str(problem or error).split())
    if mark is None:
        return GraphError(f"not valid YAML/JSON: {what}", source=source)
    return GraphError(
        f"not valid YAML/JSON: {what} (column {mark.column + 1})", source=source, line=mark.line + 1
    )


def parse_graph(text: str, *, source: str = "<config>") -> Graph:
    """A graph from YAML/JSON text; the ``pipeline:`` key may wrap it (a settings file)."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise yaml_error(error, source) from None
    if not isinstance(data, dict):
        raise GraphError(
            "the config must be a mapping with nodes/edges or source/sink", source=source
        )
    if isinstance(data.get("pipeline"), dict):
        data = data["pipeline"]
    return from_config(data, source=source)


def from_config(data: Mapping[str, Any], *, source: str | None = None) -> Graph:
    """A graph from a config mapping (as loaded from YAML/JSON, optionally with lines)."""
    line = data.get(_LINE)
    mode = data.get("mode") or ("classic" if "source" in data and "nodes" not in data else "dag")
    try:
        if mode == Mode.CLASSIC:
            return _classic(data, source)
        if mode == Mode.DAG:
            return _dag(data, source)
    except ValidationError as error:
        raise _from_validation(error, data, source) from None
    raise GraphError(f"mode must be 'dag' or 'classic', not {mode!r}", source=source, line=line)


def _dag(data: Mapping[str, Any], source: str | None) -> Graph:
    unknown = set(data) - {"name", "mode", "nodes", "edges", _LINE, "description", "settings"}
    if unknown:
        raise GraphError(
            f"unknown key(s) {', '.join(sorted(unknown))} (a DAG config has name, nodes, edges)",
            source=source,
            line=data.get(_LINE),
        )
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise GraphError("'nodes' must be a non-empty list", source=source, line=data.get(_LINE))
    nodes = [_node_spec(raw, source) for raw in raw_nodes]
    edges = [_edge_spec(raw, source) for raw in data.get("edges") or []]
    return Graph(
        name=str(data.get("name", "pipeline")),
        mode=Mode.DAG,
        nodes=tuple(nodes),
        edges=tuple(edges),
        source=source,
    )


def _node_spec(raw: Any, source: str | None) -> NodeSpec:
    if not isinstance(raw, dict):
        raise GraphError(
            f"a node must be a mapping with id, type, params, not {raw!r}", source=source
        )
    line = raw.get(_LINE)
    try:
        return NodeSpec(
            params=_strip_lines(raw.get("params") or {}),
            line=line,
            **{k: v for k, v in raw.items() if k not in {"params", _LINE}},
        )  # an absent id or type is absent: pydantic says it is missing
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        node_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "missing: every node needs an id and a type"
        raise GraphError(f"{where}: {message}", node_id=node_id, source=source, line=line) from None


def _edge_spec(raw: Any, source: str | None) -> EdgeSpec:
    if isinstance(raw, str):
        return edge(raw)
    if isinstance(raw, dict):
        line = raw.get(_LINE)
        port = f".{raw['port']}" if raw.get("port") else ""
        text = f"{raw.get('from')}{port} -> {raw.get('to')}"
        try:
            return edge(text, line=line)
        except GraphError as error:
            raise GraphError(error.reason, source=source, line=line) from None
    raise GraphError(f"an edge is 'a -> b' or {{from, to, port}}, not {raw!r}", source=source)


def _classic(data: Mapping[str, Any], source: str | None) -> Graph:
    clean = {k: v for k, v in data.items() if k not in {"mode", _LINE, "description", "settings"}}

    def stage(raw: Any) -> Any:
        if isinstance(raw, dict):
            return {**_strip_lines(raw), "line": raw.get(_LINE)}
        return raw

    clean["source"] = stage(clean.get("source"))
    clean["sink"] = stage(clean.get("sink"))
    clean["operators"] = [stage(op) for op in clean.get("operators") or []]
    if isinstance(clean.get("batcher"), dict):
        clean["batcher"] = _strip_lines(clean["batcher"])
    return LinearSpec.model_validate(clean).to_graph(source_file=source)


def _from_validation(
    error: ValidationError, data: Mapping[str, Any], source: str | None
) -> GraphError:
    first = error.errors()[0]
    loc: Sequence[Any] = first["loc"]
    line = data.get(_LINE)
    cursor: Any = data
    for part in loc:
        try:
            cursor = cursor[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(cursor, dict) and _LINE in cursor:
            line = cursor[_LINE]
    where = ".".join(str(p) for p in loc)
    return GraphError(
        f"{where}: {first['msg'].removeprefix('Value error, ')}", source=source, line=line
    )

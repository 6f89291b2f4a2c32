"""Compiling a graph: its description (:mod:`market_data_pipeline.graph`) checked against a
registry and turned into the runnable :class:`ValidatedGraph`.

Kept apart from the graph so that the frozen description imports no registry (which
imports the components and loads every component type by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from market_data_pipeline._kinds import ComponentKind
from market_data_pipeline.components import Component
from market_data_pipeline.registry import Registry, default_registry

if TYPE_CHECKING:  # the description never needs its compiler: no import circle
    from market_data_pipeline.graph import EdgeSpec, Graph

__all__ = ["ValidatedGraph", "compile_graph"]


@dataclass(frozen=True, slots=True)
class ValidatedGraph:
    """A graph whose components exist and whose params are valid, in topological order."""

    graph: Graph
    components: Mapping[str, Component[Any]]
    kinds: Mapping[str, ComponentKind]
    order: tuple[str, ...]

    def inputs(self, node_id: str) -> list[EdgeSpec]:
        return [e for e in self.graph.edges if e.target == node_id]

    def outputs(self, node_id: str) -> list[EdgeSpec]:
        return [e for e in self.graph.edges if e.source == node_id]


def compile_graph(graph: Graph, registry: Registry | None = None) -> ValidatedGraph:
    """Check everything that can be checked before running (unknown types, params,
    dangling edges, ports, edges into providers or out of sinks, unconnected nodes,
    cycles); return the runnable form. Errors are ``GraphError``s naming file, line, node."""
    registry = registry or default_registry()
    ids = graph.unique_ids()
    components: dict[str, Component[Any]] = {}
    kinds: dict[str, ComponentKind] = {}
    targets = {e.target for e in graph.edges}
    sources = {e.source for e in graph.edges}
    for spec in graph.nodes:
        role = (
            ComponentKind.PROVIDER
            if spec.id not in targets
            else ComponentKind.OPERATOR
            if spec.id in sources
            else ComponentKind.SINK
        )
        kinds[spec.id] = registry.kind_of(spec.type, graph=graph, spec=spec, role=role)
        components[spec.id] = registry.create(spec, graph=graph, role=kinds[spec.id])
    for e in graph.edges:
        for end in (e.source, e.target):
            if end not in ids:
                raise graph.error(f"edge '{e}' refers to unknown node {end!r}", e)
        outputs = components[e.source].outputs
        if kinds[e.source] is ComponentKind.SINK:
            raise graph.error(f"edge '{e}' leaves a sink: sinks have no outputs", e)
        if e.port not in outputs:
            known = ", ".join(outputs)
            raise graph.error(
                f"edge '{e}': node {e.source!r} has no output {e.port!r} ({known})", e
            )
        if kinds[e.target] is ComponentKind.PROVIDER:
            raise graph.error(f"edge '{e}' enters a provider: providers have no inputs", e)
    graph.check_connected(kinds)
    order = graph.topological_order()
    return ValidatedGraph(graph=graph, components=components, kinds=kinds, order=order)

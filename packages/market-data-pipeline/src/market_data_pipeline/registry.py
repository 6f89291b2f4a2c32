"""Where component types and named functions come from.

Built-in providers, operators and sinks are listed here by import path (imported on first
use, so an optional extra is needed only by the component that uses it). Other packages add
components without touching this one through entry points::

    [project.entry-points."market_data_pipeline.operators"]
    vwap_signal = "my_package.operators:VwapSignal"

and named functions (for ``map``, ``filter``, ``flat_map``, ``key_by``, ``router``) through
the ``market_data_pipeline.functions`` group or :func:`register_function`. Configs refer to
functions by name and never ``eval`` strings.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from market_data_pipeline._kinds import ComponentKind
from market_data_pipeline.components import Component, Operator, Provider, SinkComponent
from market_data_pipeline.exceptions import GraphError, UnknownComponentError
from market_data_pipeline.named import FUNCTIONS_GROUP, function, register_function

if TYPE_CHECKING:
    from market_data_pipeline.graph import Graph, NodeSpec

__all__ = [
    "BUILTINS",
    "FUNCTIONS_GROUP",
    "ComponentKind",
    "Registry",
    "default_registry",
    "function",
    "register_function",
]

_BASES: Final[dict[ComponentKind, type[Component[Any]]]] = {
    ComponentKind.PROVIDER: Provider,
    ComponentKind.OPERATOR: Operator,
    ComponentKind.SINK: SinkComponent,
}
GROUPS: Final = {
    ComponentKind.PROVIDER: "market_data_pipeline.providers",
    ComponentKind.OPERATOR: "market_data_pipeline.operators",
    ComponentKind.SINK: "market_data_pipeline.sinks",
}

_P = "market_data_pipeline"
BUILTINS: Final[dict[ComponentKind, dict[str, str]]] = {
    ComponentKind.PROVIDER: {
        "synthetic": f"{_P}.providers.synthetic:SyntheticProvider",
        "replay": f"{_P}.providers.replay:ReplayProvider",
        "ibkr": f"{_P}.providers.ibkr:IBKRProvider",
        "redis_stream": f"{_P}.providers.redis_stream:RedisStreamProvider",
    },
    ComponentKind.OPERATOR: {
        "map": f"{_P}.operators.basic:Map",
        "filter": f"{_P}.operators.basic:Filter",
        "flat_map": f"{_P}.operators.basic:FlatMap",
        "key_by": f"{_P}.operators.basic:KeyBy",
        "deduplicate": f"{_P}.operators.dedupe:Deduplicate",
        "buffer": f"{_P}.operators.buffer:Buffer",
        "throttle": f"{_P}.operators.throttle:Throttle",
        "tumbling_window": f"{_P}.operators.window:TumblingWindow",
        "sliding_window": f"{_P}.operators.window:SlidingWindow",
        "resample_ohlc": f"{_P}.operators.resample:ResampleOHLC",
        "hash_partition": f"{_P}.operators.partition:HashPartition",
        "router": f"{_P}.operators.router:Router",
        "merge": f"{_P}.operators.merge:Merge",
    },
    ComponentKind.SINK: {
        "store": f"{_P}.sinks.store:StoreSink",
        "file": f"{_P}.sinks.files:FileSink",
        "stdout": f"{_P}.sinks.stdout:StdoutSink",
        "null": f"{_P}.sinks.stdout:NullSink",
        "redis_stream": f"{_P}.sinks.redis_stream:RedisStreamSink",
    },
}


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry:
    """Component types by kind and name, plus named functions."""

    def __init__(self, *, builtins: bool = True, plugins: bool = True) -> None:
        self._paths: dict[ComponentKind, dict[str, str | type[Component[Any]]]] = {
            k: {} for k in ComponentKind
        }
        if builtins:
            for kind, table in BUILTINS.items():
                self._paths[kind].update(table)
        if plugins:
            for kind, group in GROUPS.items():
                for ep in entry_points(group=group):
                    self._paths[kind].setdefault(ep.name, ep.value)

    def register(self, name: str, cls: type[Component[Any]]) -> None:
        """Add (or replace) a component type; its kind follows from its base class."""
        for kind, base in _BASES.items():
            if issubclass(cls, base):
                self._paths[kind][name] = cls
                return
        msg = f"{cls!r} is not a Provider, Operator or SinkComponent"
        raise TypeError(msg)

    def names(self, kind: ComponentKind) -> list[str]:
        return sorted(self._paths[kind])

    def kind_of(
        self,
        type_name: str,
        *,
        graph: Graph | None = None,
        spec: NodeSpec | None = None,
        role: ComponentKind | None = None,
    ) -> ComponentKind:
        """The kind registered under ``type_name``; a name registered as several kinds (e.g.
        ``redis_stream``, a provider and a sink) resolves by the node's ``role`` in its graph."""
        kinds = [kind for kind in ComponentKind if type_name in self._paths[kind]]
        if role in kinds:
            return role
        if kinds:
            return kinds[0]
        known = "; ".join(
            f"{kind}s: {', '.join(sorted(table))}" for kind, table in self._paths.items() if table
        )
        raise UnknownComponentError(
            f"unknown component type {type_name!r} ({known})",
            node_id=spec.id if spec else None,
            source=graph.source if graph else None,
            line=spec.line if spec else None,
        )

    def get(self, type_name: str, kind: ComponentKind | None = None) -> type[Component[Any]]:
        kind = self.kind_of(type_name, role=kind)
        entry = self._paths[kind][type_name]
        if isinstance(entry, str):
            try:
                loaded = _load(entry)
            except ImportError as error:
                if (error.name or "").startswith("market_data_pipeline"):
                    raise
                raise GraphError(
                    f"component {type_name!r} needs a package that is not installed: {error.name}"
                    f" (install the extra that provides it, e.g. market-data-pipeline[...])"
                ) from None
            self._paths[kind][type_name] = loaded
            entry = loaded
        return entry

    def create(
        self,
        spec: NodeSpec,
        *,
        graph: Graph | None = None,
        role: ComponentKind | None = None,
    ) -> Component[Any]:
        """Instantiate the node's component with validated params."""
        where: dict[str, Any] = {
            "node_id": spec.id,
            "source": graph.source if graph else None,
            "line": spec.line,
        }
        kind = self.kind_of(spec.type, graph=graph, spec=spec, role=role)
        try:
            cls = self.get(spec.type, kind)
        except GraphError as error:
            raise GraphError(error.reason, **where) from None
        try:
            params = cls.Params.model_validate(spec.params)
        except ValidationError as error:
            problems = "; ".join(
                f"params.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise GraphError(f"{spec.type}: {problems}", **where) from None
        try:
            return cls(spec.id, params)
        except (ValueError, GraphError) as error:
            reason = error.reason if isinstance(error, GraphError) else str(error)
            raise GraphError(f"{spec.type}: {reason}", **where) from None

    def describe(self, kind: ComponentKind) -> list[tuple[str, str]]:
        """``(name, first line of the description)`` for ``mdp list``."""
        out = []
        for name in self.names(kind):
            try:
                cls = self.get(name, kind)
                text = (cls.description or (cls.__doc__ or "")).strip().splitlines()
                out.append((name, text[0] if text else ""))
            except GraphError as error:
                out.append((name, f"(unavailable: {error.reason})"))
        return out


@cache
def default_registry() -> Registry:
    """The process-wide registry: built-ins plus installed plugins."""
    return Registry()

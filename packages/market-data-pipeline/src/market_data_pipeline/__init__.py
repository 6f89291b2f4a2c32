"""market-data-pipeline: the streaming engine of the market-data platform.

Providers emit trades and quotes, a DAG of event-time operators turns them into bars, and
sinks write them to the store, while the store's backpressure slows the providers down.

>>> from market_data_pipeline import UnifiedRuntime, UnifiedRuntimeSettings
>>> settings = UnifiedRuntimeSettings.load("examples/quickstart.yaml")  # doctest: +SKIP
>>> async with UnifiedRuntime(settings) as rt:                          # doctest: +SKIP
...     result = await rt.run()

The names below are imported on first use (PEP 562): ``import market_data_pipeline`` and
``mdp --help`` do not pay for pyarrow, the runtime or the registry until they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_data_core.lazy import lazy_exports

if TYPE_CHECKING:
    from market_data_pipeline.components import (
        Context,
        Emit,
        NodeStats,
        Operator,
        Params,
        Provider,
        SinkComponent,
    )
    from market_data_pipeline.exceptions import (
        GraphError,
        NodeError,
        PipelineError,
        RecordError,
        RuntimeStateError,
        UnknownComponentError,
    )
    from market_data_pipeline.graph import Graph, LinearSpec, Mode, NodeSpec, load_graph, node
    from market_data_pipeline.job import RuntimeState, UnifiedRuntime
    from market_data_pipeline.metrics import PipelineMetrics
    from market_data_pipeline.registry import ComponentKind, Registry, register_function
    from market_data_pipeline.runtime import GraphRuntime, RunResult, RunState
    from market_data_pipeline.settings import UnifiedRuntimeSettings

    __version__: str

_LAZY: dict[str, tuple[str, ...]] = {
    "components": (
        "Context", "Emit", "NodeStats", "Operator", "Params", "Provider", "SinkComponent"
    ),
    "exceptions": (
        "GraphError", "NodeError", "PipelineError", "RecordError", "RuntimeStateError",
        "UnknownComponentError",
    ),
    "graph": ("Graph", "LinearSpec", "Mode", "NodeSpec", "load_graph", "node"),
    "metrics": ("PipelineMetrics",),
    "registry": ("ComponentKind", "Registry", "register_function"),
    "runtime": ("GraphRuntime", "RunResult", "RunState"),
    "settings": ("UnifiedRuntimeSettings",),
    "job": ("RuntimeState", "UnifiedRuntime"),
}  # fmt: skip
"""The module of each public name (imported from there on first access)."""
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), version_of="market-data-pipeline")


__all__ = [
    "ComponentKind",
    "Context",
    "Emit",
    "Graph",
    "GraphError",
    "GraphRuntime",
    "LinearSpec",
    "Mode",
    "NodeError",
    "NodeSpec",
    "NodeStats",
    "Operator",
    "Params",
    "PipelineError",
    "PipelineMetrics",
    "Provider",
    "RecordError",
    "Registry",
    "RunResult",
    "RunState",
    "RuntimeState",
    "RuntimeStateError",
    "SinkComponent",
    "UnifiedRuntime",
    "UnifiedRuntimeSettings",
    "UnknownComponentError",
    "__version__",
    "load_graph",
    "node",
    "register_function",
]

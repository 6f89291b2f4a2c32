"""market-data-pipeline: the streaming engine of the market-data platform.

Providers emit trades and quotes, a DAG of event-time operators turns them into bars, and
sinks write them to the store, while the store's backpressure slows the providers down.

>>> from market_data_pipeline import UnifiedRuntime, UnifiedRuntimeSettings
>>> settings = UnifiedRuntimeSettings.load("examples/quickstart.yaml")  # doctest: +SKIP
>>> async with UnifiedRuntime(settings) as rt:                          # doctest: +SKIP
...     result = await rt.run()
"""

from importlib.metadata import version as _version

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
from market_data_pipeline.metrics import PipelineMetrics
from market_data_pipeline.registry import ComponentKind, Registry, register_function
from market_data_pipeline.runtime import GraphRuntime, RunResult, RunState
from market_data_pipeline.settings import UnifiedRuntimeSettings
from market_data_pipeline.unified import RuntimeState, UnifiedRuntime

__version__ = _version("market-data-pipeline")

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

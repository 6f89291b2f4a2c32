import importlib.metadata

import market_data_pipeline


def test_version_matches_installed_distribution() -> None:
    assert market_data_pipeline.__version__ == importlib.metadata.version("market-data-pipeline")


def test_public_api_is_pinned() -> None:
    # Adding to the public API is a decision: this list changes with it, on purpose.
    assert sorted(market_data_pipeline.__all__) == sorted(
        [
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
    )
    for name in market_data_pipeline.__all__:
        assert getattr(market_data_pipeline, name) is not None


def test_every_builtin_component_imports_and_has_a_description() -> None:
    from market_data_pipeline.registry import BUILTINS, default_registry

    registry = default_registry()
    for table in BUILTINS.values():
        for name in table:
            cls = registry.get(name)
            assert (cls.description or cls.__doc__ or "").strip(), name

"""Operators: the steps between providers and sinks. Each is registered by name in
``market_data_pipeline.registry`` and documented in ``docs/operators.md``."""

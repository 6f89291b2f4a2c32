"""The former home of the job runner: see :mod:`market_data_pipeline.job`."""

from market_data_pipeline.job import RuntimeState, UnifiedRuntime

__all__ = ["RuntimeState", "UnifiedRuntime"]

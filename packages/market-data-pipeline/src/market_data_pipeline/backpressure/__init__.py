"""Backpressure: everything that decides how fast a job's providers emit.

- :mod:`~market_data_pipeline.backpressure.controller`: :class:`BackpressureController`, the
  job's one rate controller (the store's feedback, a supervisor's pause, the job's stop);
- :mod:`~market_data_pipeline.backpressure.links`: what feeds it the store's
  ``FeedbackEvent``s (the in-process bus, Redis, a store service's feed);
- :mod:`~market_data_pipeline.backpressure.sse`: the reader of a store service's feed.

``FeedbackRateController`` is the controller's former name, kept for existing imports.
"""

from market_data_pipeline.backpressure.controller import BackpressureController, RatePublisher

FeedbackRateController = BackpressureController
"""The former name of :class:`BackpressureController`."""

__all__ = ["BackpressureController", "FeedbackRateController", "RatePublisher"]

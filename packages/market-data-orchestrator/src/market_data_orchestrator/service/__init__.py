"""The orchestrator's HTTP API (see ``market_data_orchestrator.service.app``)."""

from market_data_orchestrator.service.app import create_app, problem

__all__ = ["create_app", "problem"]

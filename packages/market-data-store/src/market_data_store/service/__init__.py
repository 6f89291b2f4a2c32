"""The store's HTTP service (FastAPI): health, metrics, ingest, query, feedback, admin."""

from market_data_store.service.app import create_app

__all__ = ["create_app"]

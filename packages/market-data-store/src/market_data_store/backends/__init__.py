"""Storage backends behind one interface (``Backend``): SQLite (embedded) and PostgreSQL."""

from market_data_store.backends.base import Backend, Freshness, Record, WriteResult

__all__ = ["Backend", "Freshness", "Record", "WriteResult"]

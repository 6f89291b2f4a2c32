"""Alembic environment: runs migrations on the connection that ``market_data_store.migrate``
passes in ``config.attributes["connection"]`` (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context

from market_data_store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    msg = "run migrations with `mds migrate` (market_data_store.migrate.upgrade)"
    raise RuntimeError(msg)

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

"""Alembic migrations of the store's schema (run with ``mds migrate``)."""

HEAD = "0002"
"""The newest revision, known without loading Alembic: a store that opens a database
already at ``HEAD`` skips Alembic (and its import) altogether. A test keeps it equal to
Alembic's own head."""

"""Apply and inspect the schema migrations (Alembic) on SQLite or PostgreSQL.

``database_url`` is the store's DSN: ``sqlite:///path/to/file.db`` or
``postgresql://user:password@host:port/dbname``. A driver error (a wrong password, say)
raises ``BackendError`` with the driver's message; the password never appears in errors.
"""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import BackendError

__all__ = ["current_revision", "head_revision", "upgrade"]


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "market_data_store:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of the store knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None  # the package ships at least one revision
    return head


# pg_advisory_xact_lock key: "mds migrate" in ASCII, constant across versions so that any two
# stores migrating one database take turns.
_MIGRATION_LOCK = 0x6D6473206D696772


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Workers started together on a new database would otherwise all create the same
        # tables at once ("relation alembic_version already exists"). The lock is held until
        # the transaction commits; whoever waited then finds the schema at head.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    elif connection.dialect.name == "sqlite":
        # The same for SQLite: take the database's write lock before reading its revision
        # (the driver would start the transaction only at the first INSERT, after the DDL).
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    command.upgrade(_config(connection), revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def _run(url: DatabaseUrl, fn: Any, *args: Any) -> Any:
    try:
        return await _run_on(url, fn, *args)
    except DBAPIError as exc:  # e.g. a wrong password: the driver's words, not a traceback
        detail = str(exc.orig if exc.orig is not None else exc).strip() or type(exc).__name__
        password = url.password
        if password:
            detail = detail.replace(password, "***")
        raise BackendError(f"migrations failed: {detail}") from None


async def _run_on(url: DatabaseUrl, fn: Any, *args: Any) -> Any:
    if url.is_sqlite:
        url.sqlite_path().parent.mkdir(parents=True, exist_ok=True)
        return await asyncio.to_thread(_run_sync, url, fn, *args)
    url.require_driver()
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 - postgres extra

    engine = create_async_engine(url.sqlalchemy_url(), pool_pre_ping=True)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(fn, *args)
    finally:
        await engine.dispose()


def _run_sync(url: DatabaseUrl, fn: Any, *args: Any) -> Any:
    # A second store migrating the same file waits for the write lock (default 5 s).
    engine = sa.create_engine(url.sqlalchemy_url(), connect_args={"timeout": 60})
    try:
        with engine.begin() as connection:
            return fn(connection, *args)
    finally:
        engine.dispose()


async def upgrade(url: DatabaseUrl, revision: str = "head") -> str:
    """Apply migrations up to ``revision``; return the revision the database is at."""
    await _run(url, _upgrade, revision)
    current = await current_revision(url)
    assert current is not None
    return current


async def current_revision(url: DatabaseUrl) -> str | None:
    """The revision the database is at, ``None`` before the first migration."""
    result: str | None = await _run(url, _current)
    return result

"""The store's database URL: which backend, where, and a redacted form for logs."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from market_data_store.exceptions import StoreConfigurationError

__all__ = ["DatabaseUrl"]

_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed ``sqlite:///file.db`` or ``postgresql://user:pw@host:port/db``.

    ``str()`` and ``repr()`` hide the password; ``secret()`` is the only way to get it.
    """

    _url: URL

    @classmethod
    def parse(cls, text: str) -> DatabaseUrl:
        try:
            url = make_url(text)
        except ArgumentError:
            msg = "database URL is not a URL: expected sqlite:///path or postgresql://host/db"
            raise StoreConfigurationError(msg) from None
        scheme = url.drivername.split("+", 1)[0]
        if scheme not in _SCHEMES:
            msg = f"database URL scheme {scheme!r} is not supported: use sqlite or postgresql"
            raise StoreConfigurationError(msg)
        if scheme == "sqlite" and not url.database:
            msg = "sqlite URL needs a file path, e.g. sqlite:///./market_data.db"
            raise StoreConfigurationError(msg)
        return cls(url)

    @property
    def backend(self) -> str:
        return _SCHEMES[self._url.drivername.split("+", 1)[0]]

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    def sqlite_path(self) -> Path:
        return Path(self._url.database or "")

    def sqlalchemy_url(self) -> URL:
        """For SQLAlchemy/Alembic: pysqlite, or asyncpg for PostgreSQL."""
        if self.is_sqlite:
            return self._url.set(drivername="sqlite")
        return self._url.set(drivername="postgresql+asyncpg")

    def require_driver(self) -> None:
        """``StoreConfigurationError`` naming the ``pip install`` to run when the driver
        of this URL's database is missing (PostgreSQL: the ``postgres`` extra, asyncpg and
        SQLAlchemy's greenlet; SQLite needs nothing)."""
        if self.is_sqlite:
            return
        missing = [name for name in _POSTGRES_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            msg = (
                f"PostgreSQL needs {' and '.join(missing)}: "
                "pip install 'market-data-store[postgres]'"
            )
            raise StoreConfigurationError(msg)

    def asyncpg_dsn(self) -> str:
        """For ``asyncpg.connect`` / ``create_pool`` (includes the password)."""
        return self._url.set(drivername="postgresql").render_as_string(hide_password=False)

    def secret(self) -> str:
        return self._url.render_as_string(hide_password=False)

    def __str__(self) -> str:
        return self._url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"DatabaseUrl({str(self)!r})"


_POSTGRES_MODULES = ("asyncpg", "greenlet")
"""What the ``postgres`` extra brings: the driver, and what SQLAlchemy's asyncio needs."""

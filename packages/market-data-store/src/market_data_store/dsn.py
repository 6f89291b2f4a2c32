"""The store's database URL: which backend, where, and a redacted form for logs.

Parsed with the standard library (``urllib.parse``), as SQLAlchemy's ``make_url`` parses it
(a test holds the two equal), so that opening a store does not import SQLAlchemy: only
migrations need it, and a database already at head skips them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from market_data_store.exceptions import StoreConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["DatabaseUrl"]

_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed ``sqlite:///file.db`` or ``postgresql://user:pw@host:port/db``.

    ``str()`` and ``repr()`` hide the password; ``secret()`` is the only way to get it.
    """

    drivername: str
    username: str | None = None
    _password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> DatabaseUrl:
        scheme, sep, _ = text.partition("://")
        if not sep or not scheme or not all(c.isalnum() or c in "+-._" for c in scheme):
            msg = "database URL is not a URL: expected sqlite:///path or postgresql://host/db"
            raise StoreConfigurationError(msg)
        parts = urlsplit("x" + text[len(scheme) :])  # the driver name as SQLAlchemy keeps it
        userinfo, at, hostport = parts.netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        host, port = _host_port(hostport)
        url = cls(
            drivername=scheme,
            username=unquote(user) if at else None,
            _password=unquote(password) if colon else None,
            host=host,
            port=port,
            database=unquote(parts.path[1:]) if len(parts.path) > 1 else None,
            query=tuple(parse_qsl(parts.query)),
        )
        base = scheme.split("+", 1)[0]
        if base not in _SCHEMES:
            msg = f"database URL scheme {base!r} is not supported: use sqlite or postgresql"
            raise StoreConfigurationError(msg)
        if base == "sqlite" and not url.database:
            msg = "sqlite URL needs a file path, e.g. sqlite:///./market_data.db"
            raise StoreConfigurationError(msg)
        return url

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def backend(self) -> str:
        return _SCHEMES[self.drivername.split("+", 1)[0]]

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    def sqlite_path(self) -> Path:
        return Path(self.database or "")

    def sqlalchemy_url(self) -> URL:
        """For SQLAlchemy/Alembic: pysqlite, or asyncpg for PostgreSQL."""
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - only migrations need it

        driver = "sqlite" if self.is_sqlite else "postgresql+asyncpg"
        return make_url(replace(self, drivername=driver).secret())

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
        return replace(self, drivername="postgresql").secret()

    def secret(self) -> str:
        return self._render(hide_password=False)

    def _render(self, *, hide_password: bool) -> str:
        text = f"{self.drivername}://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            if self._password is not None:
                text += ":" + ("***" if hide_password else quote(self._password, safe=" +"))
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += "/" + self.database
        if self.query:
            text += "?" + urlencode(self.query)
        return text

    def __str__(self) -> str:
        return self._render(hide_password=True)

    def __repr__(self) -> str:
        return f"DatabaseUrl({str(self)!r})"


def _host_port(text: str) -> tuple[str | None, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` (or nothing) as SQLAlchemy reads them."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if port and not port.isdigit():
        msg = f"database URL has a port that is not a number: {port!r}"
        raise StoreConfigurationError(msg)
    return unquote(host) or None, int(port) if port else None


_POSTGRES_MODULES = ("asyncpg", "greenlet")
"""What the ``postgres`` extra brings: the driver, and what SQLAlchemy's asyncio needs."""

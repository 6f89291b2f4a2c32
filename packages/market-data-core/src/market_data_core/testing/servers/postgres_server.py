"""A real PostgreSQL server for tests and benchmarks: ``initdb`` into a temporary directory,
``postgres`` on 127.0.0.1 with a free port, stop / restart / crash it. No Docker, no mocks.

The binaries are looked up in ``$MD_PG_BIN`` (the directory that holds ``initdb`` and
``postgres``), then on ``PATH``, then in ``/usr/lib/postgresql/<version>/bin`` (Debian and
Ubuntu install them there, off ``PATH``), newest version first. When none is found,
``MissingBinaryError`` says what to install: tests fail with that message rather than being
skipped.

PostgreSQL refuses to run as root. When this process is root, ``initdb`` and ``postgres``
run as the ``postgres`` system user (which the Debian packages create), or as ``nobody``
when there is no such user; the temporary directory is handed over to that user. The
server is for tests: ``fsync`` and ``full_page_writes`` are off (a crash of the server,
``kill()``, loses nothing committed; a crash of the machine would).

    with PostgresServer(password="s3cret") as server:
        backend = PostgresBackend(server.url)
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote
from uuid import uuid4

from market_data_core.testing.servers.process import (
    MissingBinaryError,
    free_port,
    poll_until_ready,
    scaled,
)

if TYPE_CHECKING:
    from market_data_store.dsn import DatabaseUrl

__all__ = ["PostgresDatabase", "PostgresServer", "find_pg_bin"]

DEFAULT_SETTINGS: Mapping[str, str] = {
    "fsync": "off",  # commits still reach the OS: kill() loses nothing committed
    "full_page_writes": "off",
    "timezone": "UTC",
    "max_connections": "100",
}
_LOG_TAIL = 3000
_PROTOCOL_3 = 196608


def find_pg_bin(name: str) -> str:
    """Path of the PostgreSQL server binary ``name`` (``initdb``, ``postgres``, ``pg_ctl``),
    or ``MissingBinaryError`` naming what to install."""
    candidates: list[Path] = []
    configured = os.environ.get("MD_PG_BIN")
    if configured:
        path = Path(configured)
        candidates.append(path / name if path.is_dir() else path.parent / name)
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=_version_key, reverse=True)
    )
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    msg = (
        f"PostgreSQL server binary {name!r} not found: install PostgreSQL (Debian/Ubuntu: "
        "`apt-get install postgresql`), or set MD_PG_BIN to the directory that holds "
        "initdb and postgres (e.g. /usr/lib/postgresql/15/bin)"
    )
    raise MissingBinaryError(msg)


def _version_key(path: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin/initdb`` -> ``(15,)``, so that 15 sorts above 9.6."""
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged user to run PostgreSQL as, or ``None`` when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    msg = "running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL"
    raise RuntimeError(msg)


class PostgresServer:
    """A throwaway PostgreSQL cluster bound to 127.0.0.1 (TCP only, no Unix socket).

    ``user`` is the database superuser. With a ``password``, TCP connections must
    authenticate with it (scram-sha-256), so tests exercise the real password path;
    without one, they are trusted. ``settings`` add to or override ``DEFAULT_SETTINGS``.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        user: str = "postgres",
        password: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        initdb = Path(find_pg_bin("initdb")).resolve()
        sibling = initdb.parent / "postgres"  # the server of the same version as initdb
        self.initdb = str(initdb)
        self.postgres = str(sibling) if sibling.is_file() else find_pg_bin("postgres")
        self.port = port or free_port()
        self.user = user
        self.password = password
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self._os_user = _server_user()
        self._tmp = tempfile.TemporaryDirectory(prefix="md-postgres-")
        self.base_dir = Path(self._tmp.name)
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        if self._os_user is not None:
            os.chown(self.base_dir, self._os_user.pw_uid, self._os_user.pw_gid)
        self._process: subprocess.Popen[bytes] | None = None

    # --- addresses ---------------------------------------------------------------------

    def dsn_for(self, database: str) -> str:
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def url_for(self, database: str) -> DatabaseUrl:
        """The store's ``DatabaseUrl`` of ``database`` (needs market-data-store)."""
        from market_data_store.dsn import DatabaseUrl  # noqa: PLC0415 - the store's type

        return DatabaseUrl.parse(self.dsn_for(database))

    @property
    def dsn(self) -> str:
        """``postgresql://user[:password]@127.0.0.1:PORT/postgres``."""
        return self.dsn_for("postgres")

    @property
    def url(self) -> DatabaseUrl:
        return self.url_for("postgres")

    async def create_database(self, name: str | None = None) -> DatabaseUrl:
        """Create an empty database (``test_<random hex>`` by default); return its URL.
        Needs asyncpg (the store's ``postgres`` extra)."""
        name = name or f"test_{uuid4().hex}"
        _check_name(name)
        await self._admin(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    async def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting its sessions."""
        _check_name(name)
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_database_sync(self, name: str | None = None, *, template: str = "template0") -> str:
        """Create a database copied from ``template`` (``test_<random hex>`` by default) with
        ``psql``, no driver needed; return its name."""
        name = name or f"test_{uuid4().hex}"
        _check_name(name)
        _check_name(template)
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database_sync(self, name: str) -> None:
        """Drop a database with ``psql``, disconnecting its sessions."""
        _check_name(name)
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one SQL statement as the superuser with ``psql`` (fails with its output)."""
        args = [self._psql(), "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]
        args += ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database]
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        if self.password is not None:
            env["PGPASSWORD"] = self.password  # not on the command line (ps)
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            args, env=env, capture_output=True, check=False, timeout=scaled(60)
        )
        if done.returncode != 0:
            msg = f"psql {sql!r} failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
            raise RuntimeError(msg)

    def _psql(self) -> str:
        sibling = Path(self.initdb).parent / "psql"  # the client of the server's version
        return str(sibling) if sibling.is_file() else find_pg_bin("psql")

    async def _admin(self, sql: str) -> None:
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - postgres extra

        connection = await asyncpg.connect(self.url.asyncpg_dsn())
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, size: int = _LOG_TAIL) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    # --- lifecycle ---------------------------------------------------------------------

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cwd": self.base_dir, "stdin": subprocess.DEVNULL}
        if self._os_user is not None:
            kwargs |= {
                "user": self._os_user.pw_uid,
                "group": self._os_user.pw_gid,
                "extra_groups": [],
            }
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        kwargs["env"] = env | {"LC_ALL": "C", "TZ": "UTC"}
        return kwargs

    def _initdb(self) -> None:
        args = [
            self.initdb,
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]
        if self.password is None:
            args.append("--auth=trust")
        else:
            pwfile = self.base_dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            pwfile.chmod(0o600)
            if self._os_user is not None:
                os.chown(pwfile, self._os_user.pw_uid, self._os_user.pw_gid)
            args += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        with self.log_path.open("ab") as log:
            code = subprocess.call(  # noqa: S603 - fixed argv, no shell
                args, stdout=log, stderr=subprocess.STDOUT, **self._popen_kwargs()
            )
        with contextlib.suppress(FileNotFoundError):
            (self.base_dir / "pwfile").unlink()
        if code != 0:
            msg = f"initdb failed with exit code {code}:\n{self.log_tail()}"
            raise RuntimeError(msg)

    def start(self, timeout: float = 60.0) -> None:
        """Initialise the cluster (the first time), start the server and wait until it
        accepts connections (``timeout`` is ``scaled`` to the machine's load)."""
        if self.running:
            return
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        args = [self.postgres, "-D", str(self.data_dir), "-p", str(self.port), "-h", "127.0.0.1"]
        settings = {"unix_socket_directories": "", **self.settings}
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches the backends
                **self._popen_kwargs(),
            )
        self._wait_ready(scaled(timeout))

    def _wait_ready(self, timeout: float) -> None:
        ready = functools.partial(_accepts_connections, self.port, self.user)
        if poll_until_ready(self._process, ready, timeout, interval=0.05):
            return
        self.kill()
        msg = (
            f"PostgreSQL on 127.0.0.1:{self.port} did not become ready within {timeout:.0f} s; "
            f"server log:\n{self.log_tail()}"
        )
        raise RuntimeError(msg)

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, disconnect clients); an
        immediate shutdown then SIGKILL when it takes longer than ``timeout``. Idempotent."""
        process = self._process
        if process is None:
            return
        for sig in (signal.SIGINT, signal.SIGQUIT):
            if process.poll() is None:
                process.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout)
        if process.poll() is None:
            self.kill()
        self._process = None

    def kill(self) -> None:
        """Crash the server: SIGKILL to the postmaster and every process of its group, as
        when the machine loses power. The next ``start()`` runs crash recovery."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port: every client connection is broken."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        msg = f"database name {name!r}: use letters, digits and underscores (at most 63)"
        raise ValueError(msg)


def _accepts_connections(port: int, user: str) -> bool:
    """Send a startup packet: the server answers with an authentication request ('R') once
    it accepts connections, and with an error ('E') while it starts up or shuts down."""
    body = b"".join(
        [
            struct.pack("!i", _PROTOCOL_3),
            b"user\0" + user.encode() + b"\0database\0postgres\0\0",
        ]
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(struct.pack("!i", len(body) + 4) + body)
            reply = sock.recv(4096)  # all of it: closing with unread data would reset
            return reply[:1] == b"R"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count: they hold no
    shared memory, and a restart only waits for shared memory to be released)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a group we cannot signal is not ours
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux: trust killpg
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass(frozen=True)
class PostgresDatabase:
    """One database of a (shared) ``PostgresServer``: what a test connects to."""

    server: PostgresServer
    name: str

    @property
    def dsn(self) -> str:
        """``postgresql://user[:password]@127.0.0.1:PORT/<name>``."""
        return self.server.dsn_for(self.name)

    @property
    def url(self) -> DatabaseUrl:
        """The store's ``DatabaseUrl`` of this database (needs market-data-store)."""
        return self.server.url_for(self.name)

    @property
    def password(self) -> str | None:
        return self.server.password

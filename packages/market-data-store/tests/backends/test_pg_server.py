"""The PostgreSQL server helper of the tests (``market_data_store.testing``)."""

from pathlib import Path

import pytest

from market_data_store.testing import MissingBinaryError, PostgresServer, find_pg_bin


def test_server_urls_hide_the_password(postgres_server: PostgresServer) -> None:
    assert postgres_server.dsn.startswith("postgresql://postgres:")
    assert f"@127.0.0.1:{postgres_server.port}/postgres" in postgres_server.dsn
    password = postgres_server.password
    assert password
    assert password in postgres_server.dsn  # for drivers
    assert password not in str(postgres_server.url)
    assert password not in repr(postgres_server.url)
    assert postgres_server.running


def test_missing_binary_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MD_PG_BIN", "/nonexistent")
    with pytest.raises(MissingBinaryError, match="apt-get install postgresql"):
        find_pg_bin("no-such-postgres-binary")


def test_binaries_are_found_through_md_pg_bin(monkeypatch: pytest.MonkeyPatch) -> None:
    found = find_pg_bin("initdb")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("MD_PG_BIN", str(Path(found).parent))
    assert find_pg_bin("initdb") == found

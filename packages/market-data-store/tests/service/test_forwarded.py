"""Forwarded headers are believed from configured proxies only (``MDS_TRUSTED_PROXIES``):
uvicorn's default believes any caller on 127.0.0.1, which could then pick the client
address that logs, audits and per-client limits use."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest
import uvicorn

from market_data_core.serving import forwarded
from market_data_store.settings import StoreSettings

pytestmark = pytest.mark.asyncio


async def _client_seen(settings: StoreSettings, peer: str) -> str:
    """The client address an app behind ``mds serve``'s uvicorn settings sees for a
    request from ``peer`` that claims to come from 203.0.113.9."""
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["client"] = scope["client"][0]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, **forwarded(settings.trusted_proxies))
    config.load()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
        "headers": [(b"x-forwarded-for", b"203.0.113.9")], "client": (peer, 50000),
        "server": ("127.0.0.1", 8080),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    await config.loaded_app(scope, receive, send)
    return str(seen["client"])


async def test_no_proxy_is_trusted_by_default() -> None:
    settings = StoreSettings()
    assert settings.trusted_proxies == []
    assert await _client_seen(settings, "127.0.0.1") == "127.0.0.1"


async def test_a_configured_proxy_is_believed_and_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDS_TRUSTED_PROXIES", '["10.0.0.0/8"]')
    settings = StoreSettings()
    assert settings.trusted_proxies == [ip_network("10.0.0.0/8")]
    assert await _client_seen(settings, "10.1.2.3") == "203.0.113.9"
    assert await _client_seen(settings, "127.0.0.1") == "127.0.0.1"

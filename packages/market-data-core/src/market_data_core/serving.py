"""What the HTTP services (``mds serve``, ``mdo serve``) share about being served."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any

__all__ = ["forwarded"]


def forwarded(trusted: Sequence[IPv4Network | IPv6Network]) -> dict[str, Any]:
    """uvicorn's settings for forwarded headers: believed only from ``trusted`` proxies.
    uvicorn believes ``X-Forwarded-For`` from 127.0.0.1 by default (or what
    ``FORWARDED_ALLOW_IPS`` says), so any local caller could pick the client address that
    audit records and per-client rate limits use; with no proxy configured the headers are
    ignored and the address is the connection's peer."""
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": [str(n) for n in trusted]}

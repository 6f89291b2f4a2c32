"""What the HTTP services (``mds serve``, ``mdo serve``) share about being served."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any

__all__ = ["forwarded", "query_names"]


def forwarded(trusted: Sequence[IPv4Network | IPv6Network]) -> dict[str, Any]:
    """uvicorn's settings for forwarded headers: believed only from ``trusted`` proxies.
    uvicorn believes ``X-Forwarded-For`` from 127.0.0.1 by default (or what
    ``FORWARDED_ALLOW_IPS`` says), so any local caller could pick the client address that
    audit records and per-client rate limits use; with no proxy configured the headers are
    ignored and the address is the connection's peer."""
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": [str(n) for n in trusted]}


def query_names(route: object) -> frozenset[str]:
    """The query parameters a matched route declares (its dependencies' too): the ones
    whose values an access log may show (``market_data_core.logs.redacted_query``).
    Empty for anything that is not a FastAPI route (an unmatched path)."""
    known = _QUERY_NAMES.get(id(route))
    if known is None or known[0] is not route:
        known = _QUERY_NAMES[id(route)] = (route, _declared(route))
    return known[1]


_QUERY_NAMES: dict[int, tuple[object, frozenset[str]]] = {}
"""Per route (routes are not hashable), held for the life of the app."""


def _declared(route: object) -> frozenset[str]:
    from fastapi.routing import APIRoute  # noqa: PLC0415 - the services only

    if not isinstance(route, APIRoute):
        return frozenset()
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)

"""The catalogue of named functions: what ``fn: name`` in a config refers to.

A function is found by name among those registered with :func:`register_function`, the
built-ins of :mod:`market_data_pipeline.functions` (loaded by path on first use, as the
registry loads built-in components) and the ``market_data_pipeline.functions`` entry
point group of other packages. Configs never ``eval`` strings.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Final, TypeVar

from market_data_pipeline.exceptions import GraphError

__all__ = ["BUILTIN_FUNCTIONS", "FUNCTIONS_GROUP", "function", "register_function"]

BUILTIN_FUNCTIONS: Final = "market_data_pipeline.functions"
"""The module whose import registers the built-in functions."""

F = TypeVar("F", bound=Callable[..., Any])

FUNCTIONS_GROUP: Final = "market_data_pipeline.functions"
"""The entry point group of named functions from other packages."""

_functions: dict[str, Callable[..., Any]] = {}


def register_function(name: str) -> Callable[[F], F]:
    """Register a function under ``name`` for configs (``fn: name``)::

    @register_function("mid")
    def mid(table: pa.Table) -> pa.Table: ...
    """

    def decorate(fn: F) -> F:
        _functions[name] = fn
        return fn

    return decorate


def function(name: str) -> Callable[..., Any]:
    """A function registered by :func:`register_function`, a built-in or an entry point,
    by name."""
    importlib.import_module(BUILTIN_FUNCTIONS)  # registers the built-ins (once)
    if name not in _functions:
        for ep in entry_points(group=FUNCTIONS_GROUP, name=name):
            _functions[name] = ep.load()
    if name not in _functions:
        known = ", ".join(sorted(_functions)) or "none registered"
        raise GraphError(f"unknown function {name!r} (known: {known})")
    return _functions[name]

"""Lazy package exports (PEP 562), one home for the four packages' ``__init__``.

A package lists the module of each public name; ``import package`` then costs nothing,
and ``package.Name`` imports its module on first access and keeps the value as a plain
attribute. ``mdp --help`` and a one-trade ``mdp run`` do not pay for the contracts they
never touch (pydantic builds each model class when its module is imported).

>>> getattr_, dir_ = lazy_exports("json", {"decoder": ("JSONDecoder",)}, globals())
>>> getattr_("JSONDecoder").__name__
'JSONDecoder'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    modules: Mapping[str, tuple[str, ...]],
    namespace: dict[str, Any],
    *,
    version_of: str | None = None,
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: each name of ``modules``
    (module -> names, relative to the package) imported on first access into
    ``namespace`` (the package's ``globals()``); ``__version__`` from the installed
    distribution ``version_of``, if given."""
    exports = {name: f"{package}.{module}" for module, names in modules.items() for name in names}

    def getattr_(name: str) -> object:
        if name == "__version__" and version_of is not None:
            from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

            try:
                value: object = version(version_of)
            except PackageNotFoundError:  # pragma: no cover - a source tree not installed
                value = "0.0.0+unknown"
        elif name in exports:
            value = getattr(import_module(exports[name]), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value  # once imported, a plain attribute
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return getattr_, dir_

"""The layout's rules, read from the sources of the four packages: imports point one way.

An import circle is two modules that import each other, directly or through others, at any
depth: at module level or inside a function (a function-level import only hides a circle
until the function runs). Imports under ``if TYPE_CHECKING:`` are types only and never run.
"""

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "packages").glob("*/src"))
_NESTED = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.With,
    ast.AsyncWith,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.If,
    ast.Try,
)


def modules() -> dict[str, Path]:
    """Every module of the four packages by dotted name (a package by its own name)."""
    found = {}
    for source in SOURCES:
        for path in source.rglob("*.py"):
            parts = list(path.relative_to(source).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _statements(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement that runs sometime, nested ones included; not a TYPE_CHECKING block."""
    for statement in body:
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            yield from _statements(statement.orelse)
            continue
        yield statement
        if isinstance(statement, _NESTED):
            for field in ("body", "orelse", "finalbody"):
                yield from _statements(getattr(statement, field, []))
            for handler in getattr(statement, "handlers", []):
                yield from _statements(handler.body)


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for statement in _statements(ast.parse(path.read_text()).body):
        if isinstance(statement, ast.Import):
            found |= {alias.name for alias in statement.names}
        elif isinstance(statement, ast.ImportFrom):
            base = statement.module or ""
            if statement.level:
                parent = package[: len(package) - statement.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            for alias in statement.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {module for module in found if module in known and module != name}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            component.append(module)
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    known = modules()
    assert len(known) > 150, f"the sources were not found under {ROOT / 'packages'}"
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert circles(graph) == []


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"a": "import pkg.b\n", "b": "def f():\n    import pkg.a\n"}, [["pkg.a", "pkg.b"]]),
        (
            {"a": "from . import b\n", "b": "from .c import x\n", "c": "from .a import y\n"},
            [["pkg.a", "pkg.b", "pkg.c"]],
        ),
        ({"a": "import pkg.b\n", "b": "if TYPE_CHECKING:\n    import pkg.a\n"}, []),
        ({"a": "import pkg.b\n", "b": "import json\n"}, []),
    ],
)
def test_the_check_finds_circles_at_any_depth_and_only_those(
    tmp_path: Path, sources: dict[str, str], expected: list[list[str]]
) -> None:
    """The check itself: a function-level import closes a circle, so do relative imports
    through a third module; a TYPE_CHECKING import does not, nor does an outside module."""
    package = tmp_path / "pkg"
    package.mkdir()
    known = {"pkg": package / "__init__.py"}
    known["pkg"].write_text("")
    for name, text in sources.items():
        known[f"pkg.{name}"] = package / f"{name}.py"
        known[f"pkg.{name}"].write_text(text)
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert circles(graph) == expected

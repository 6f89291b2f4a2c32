"""Check what a service puts on the wire against the committed JSON Schemas of core.

For the contract tests of every package (``tests/contracts/``) and for users' own services::

    schemas = ContractSchemas.from_env(default=REPO / "docs" / "contracts")
    schemas.assert_valid("HealthStatus", response.json())
    assert redeclared_contracts("market_data_store") == []

``MD_CONTRACTS_DIR`` (when set) names the schema directory instead of ``default``: the
current ``docs/contracts`` or a release kept under ``docs/contracts/releases/<version>``,
so one suite checks a package against today's schemas and against an older release's.

Two ways a package can drift from core, both caught:

- it *re-declares* a contract (its own ``HealthStatus`` class, or a class with all of a
  contract's fields): ``redeclared_contracts`` reads the package's installed source files
  and the modules already imported from it;
- it *emits* a document the schema refuses, or, against the schemas of the installed core
  version, one with fields the schema does not declare (tolerant schemas let unknown
  fields through for older readers, so a local copy with an extra field would otherwise
  pass): ``ContractSchemas.errors``.

Needs ``jsonschema`` (in every package's ``test`` dependency group).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel

from market_data_core.exceptions import ContractViolationError, MarketDataError
from market_data_core.schemas import CONTRACTS
from market_data_core.version import CONTRACT_VERSION

__all__ = [
    "CONTRACTS_DIR_ENV",
    "ContractSchemas",
    "ContractViolationError",
    "contracts_dir",
    "redeclared_contracts",
]

CONTRACTS_DIR_ENV = "MD_CONTRACTS_DIR"
"""The environment variable naming the directory of schemas to check against."""

_MIN_FIELDS = 3
"""A class holding every field of a contract with at least this many fields re-declares it
(fewer fields, such as ``EventMeta``'s, are too common to tell)."""


def contracts_dir(default: Path) -> Path:
    """``$MD_CONTRACTS_DIR`` when set, else ``default``; a directory with an ``index.json``."""
    configured = os.environ.get(CONTRACTS_DIR_ENV)
    directory = Path(configured) if configured else default
    if not (directory / "index.json").is_file():
        where = f"${CONTRACTS_DIR_ENV}={configured}" if configured else str(default)
        msg = f"{where}: no index.json there (expected a directory written by mdc-schemas)"
        raise MarketDataError(msg)
    return directory


@dataclass(frozen=True)
class ContractSchemas:
    """The schemas of one directory (``index.json`` and ``<Contract>.json`` files).

    ``strict`` (default: the directory's contract version is the installed core's) also
    reports fields a document carries that its schema does not declare.
    """

    directory: Path
    version: str
    names: tuple[str, ...]
    strict: bool
    _validators: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, directory: Path, *, strict: bool | None = None) -> Self:
        index = json.loads((directory / "index.json").read_text(encoding="utf-8"))
        version = str(index["contract_version"])
        return cls(
            directory=directory,
            version=version,
            names=tuple(index["contracts"]),
            strict=version == CONTRACT_VERSION if strict is None else strict,
        )

    @classmethod
    def from_env(cls, default: Path, *, strict: bool | None = None) -> Self:
        """The schemas of ``contracts_dir(default)``."""
        return cls.load(contracts_dir(default), strict=strict)

    def schema(self, name: str) -> dict[str, Any]:
        if name not in self.names:
            msg = f"{self.directory}: no contract {name!r} in release {self.version}"
            raise MarketDataError(msg)
        loaded: dict[str, Any] = json.loads(
            (self.directory / f"{name}.json").read_text(encoding="utf-8")
        )
        return loaded

    def errors(self, name: str, document: object) -> list[str]:
        """Every problem of ``document`` as contract ``name``: ``<json path>: <message>``.

        Against an older release of the major, the optional fields added since (what a
        minor version may add) are set aside first: an input contract of that release
        refuses fields it does not know, and the check is that every field it does know is
        still written as it says."""
        if self.version != CONTRACT_VERSION and isinstance(document, dict):
            document = _known_fields(self.schema(name), document, name)
        validator = self._validator(name)
        problems = [
            f"{_path(error.absolute_path)}: {error.message}"
            for error in sorted(validator.iter_errors(document), key=lambda e: _path(e.path))
        ]
        if self.strict and not problems:
            schema = validator.schema
            problems.extend(_undeclared(schema, schema, document, ()))
        return problems

    def assert_valid(self, name: str, document: object) -> None:
        """Raise ``ContractViolationError`` listing every problem of ``document``."""
        problems = self.errors(name, document)
        if problems:
            shown = json.dumps(document, default=str)[:2000]
            listed = "\n  ".join(problems)
            msg = (
                f"{name} does not conform to {self.directory / (name + '.json')}"
                f" (contract {self.version}):\n  {listed}\ndocument: {shown}"
            )
            raise ContractViolationError(msg)

    def _validator(self, name: str) -> Any:
        if name not in self._validators:
            jsonschema = _jsonschema()
            validator_class = jsonschema.Draft202012Validator
            self._validators[name] = validator_class(
                self.schema(name), format_checker=validator_class.FORMAT_CHECKER
            )
        return self._validators[name]


def _known_fields(schema: Mapping[str, Any], document: dict[str, Any], name: str) -> Any:
    """``document`` without the top-level fields ``schema`` does not declare, when those are
    optional fields of the installed core's ``name`` (added by a later minor version)."""
    from market_data_core.schemas import CONTRACTS  # noqa: PLC0415

    model = CONTRACTS.get(name)
    current = model.model_json_schema(mode="validation") if model is not None else {}
    required = set(current.get("required", ()))
    known = set(schema.get("properties", {}))
    added = set(current.get("properties", {})) - known - required
    return {key: value for key, value in document.items() if key not in added}


def _jsonschema() -> Any:
    try:
        return importlib.import_module("jsonschema")
    except ImportError:  # pragma: no cover - depends on the environment
        msg = "the contract checks need jsonschema: pip install 'jsonschema>=4.23'"
        raise MarketDataError(msg) from None


def _path(parts: Iterable[Any]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return "$" + text


def _resolve(root: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = root["$defs"][ref.removeprefix("#/$defs/")]
        return _resolve(root, resolved)
    return schema


def _undeclared(
    root: Mapping[str, Any], schema: Mapping[str, Any], document: object, at: tuple[Any, ...]
) -> list[str]:
    """Fields of ``document`` (already valid) that ``schema`` does not name."""
    schema = _resolve(root, schema)
    if "anyOf" in schema or "oneOf" in schema:
        branches = [_resolve(root, b) for b in schema.get("anyOf", schema.get("oneOf", []))]
        return _first_fitting_branch(root, branches, document, at)
    problems: list[str] = []
    if isinstance(document, dict) and "properties" in schema:
        properties = schema["properties"]
        extra = schema.get("additionalProperties")
        for key, value in document.items():
            if key in properties:
                problems.extend(_undeclared(root, properties[key], value, (*at, key)))
            elif extra is None:
                problems.append(
                    f"{_path((*at, key))}: not declared by the schema (a local re-declaration"
                    " of the contract, or a field core does not have)"
                )
            elif isinstance(extra, dict):
                problems.extend(_undeclared(root, extra, value, (*at, key)))
    elif isinstance(document, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in document.items():
            problems.extend(_undeclared(root, schema["additionalProperties"], value, (*at, key)))
    elif isinstance(document, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(document):
            problems.extend(_undeclared(root, schema["items"], item, (*at, index)))
    return problems


def _first_fitting_branch(
    root: Mapping[str, Any],
    branches: list[Mapping[str, Any]],
    document: object,
    at: tuple[Any, ...],
) -> list[str]:
    validator_class = _jsonschema().Draft202012Validator
    for branch in branches:
        if validator_class({**branch, "$defs": root.get("$defs", {})}).is_valid(document):
            return _undeclared(root, branch, document, at)
    return []


def redeclared_contracts(package: str) -> list[str]:
    """Where the installed ``package`` declares a contract of its own instead of using
    core's: one line per finding (empty: none).

    Its source files (found without importing it) are read for classes named like a
    contract, classes whose annotated fields include every field of a contract, and
    module-level names of contracts bound to anything but an import; every module of it
    already imported is checked for attributes named like a contract that are not core's.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        msg = f"{package!r} is not an installed package"
        raise MarketDataError(msg)
    findings: list[str] = []
    for location in spec.submodule_search_locations:
        for path in sorted(Path(location).rglob("*.py")):
            findings.extend(_source_findings(path))
    findings.extend(_runtime_findings(package))
    return findings


def _contract_fields() -> dict[str, set[str]]:
    return {name: set(model.model_fields) for name, model in CONTRACTS.items()}


def _source_findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    findings = []
    fields = _contract_fields()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            findings.extend(_class_findings(path, node, fields))
    for statement in tree.body:
        targets: list[ast.expr] = []
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        findings.extend(
            f"{path}:{statement.lineno}: {target.id} = ... re-declares core's {target.id}"
            f" (import it from market_data_core)"
            for target in targets
            if isinstance(target, ast.Name) and target.id in CONTRACTS
        )
    return findings


def _class_findings(path: Path, node: ast.ClassDef, fields: dict[str, set[str]]) -> list[str]:
    where = f"{path}:{node.lineno}: class {node.name}"
    annotated = {
        statement.target.id
        for statement in node.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
    }
    if node.name in CONTRACTS and (annotated or _is_data_class(node)):
        return [f"{where} re-declares core's {node.name} (import it from market_data_core)"]
    return [
        f"{where} has every field of core's {name} (use or subclass core's {name})"
        for name, required in fields.items()
        if len(required) >= _MIN_FIELDS and required <= annotated
    ]


_DATA_BASES = {"BaseModel", "RootModel", "PeerModel", "InputModel", "TypedDict", "NamedTuple"}


def _is_data_class(node: ast.ClassDef) -> bool:
    """A model, typed dict, named tuple or dataclass (a wake-up primitive called ``Signal``
    is no contract)."""
    names = [_terminal_name(base) for base in node.bases]
    names += [_terminal_name(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list]
    return any(name in _DATA_BASES or "dataclass" in name for name in names)


def _terminal_name(expression: ast.expr) -> str:
    if isinstance(expression, ast.Subscript):
        expression = expression.value
    if isinstance(expression, ast.Attribute):
        return expression.attr
    return expression.id if isinstance(expression, ast.Name) else ""


def _runtime_findings(package: str) -> list[str]:
    findings = []
    for module_name, module in sorted(sys.modules.items()):
        if not (module_name == package or module_name.startswith(package + ".")):
            continue  # (a None entry in sys.modules has no attributes: getattr gives None)
        for name, contract in CONTRACTS.items():
            value = getattr(module, name, None)
            if _is_model(value) and not _is_core(value, contract):
                findings.append(
                    f"{module_name}.{name} is {value!r}, not core's {contract.__module__}.{name}"
                )
    return findings


def _is_model(value: object) -> bool:
    if not isinstance(value, type):
        return False
    return issubclass(value, BaseModel) or dataclasses.is_dataclass(value)


def _is_core(value: object, contract: type[BaseModel]) -> bool:
    if value is contract:
        return True
    origin = contract.__pydantic_generic_metadata__.get("origin")
    return origin is not None and value is origin

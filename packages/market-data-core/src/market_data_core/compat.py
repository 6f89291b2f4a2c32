"""The compatibility rule, checked: within a major version, contracts change additively.

``breaking_changes(old, new)`` compares two sets of JSON Schemas (as ``schemas.generate``
makes them, or as committed under ``docs/contracts/releases/<version>/``) and lists every
change that would break a peer on the older version:

- a contract or a field removed;
- a field newly required, or no longer required (old readers expect it);
- a field's type, format, enum members, pattern, bounds or length limits changed;
- ``additionalProperties`` changed.

Allowed: new optional fields, new contracts, and changes of titles, descriptions, examples
and defaults. Readers ignore fields they do not know, so new optional fields are safe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["breaking_changes", "load_schemas"]

_EXACT = (
    "type",
    "format",
    "const",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "additionalProperties",
)
Schema = Mapping[str, Any]


def load_schemas(directory: Path) -> dict[str, str]:
    """File name -> text of every ``*.json`` schema in ``directory`` (the index excluded)."""
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(directory.glob("*.json"))
        if path.name != "index.json"
    }


def breaking_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Every breaking change from ``old`` to ``new`` (file name -> schema JSON text)."""
    problems: list[str] = []
    for name in sorted(set(old) - {"index.json"}):
        contract = name.removesuffix(".json")
        if name not in new:
            problems.append(f"{contract}: contract removed")
            continue
        old_root, new_root = json.loads(old[name]), json.loads(new[name])
        _Comparison(old_root, new_root, problems).compare(old_root, new_root, contract)
    return problems


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema, problems: list[str]) -> None:
        self.old_root, self.new_root, self.problems = old_root, new_root, problems
        self.seen: set[tuple[str, str]] = set()

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        marker = (json.dumps(old, sort_keys=True), json.dumps(new, sort_keys=True))
        if marker in self.seen:  # recursive definitions
            return
        self.seen.add(marker)
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        for key in _EXACT:
            if not isinstance(old.get(key), dict) and old.get(key) != new.get(key):
                self.problems.append(
                    f"{path}: {key} changed from {old.get(key)!r} to {new.get(key)!r}"
                )
        self._compare_enum(old, new, path)
        self._compare_properties(old, new, path)
        for key in ("items", "additionalProperties"):
            if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
                self.compare(old[key], new[key], f"{path}[]")
        self._compare_alternatives(old, new, path)

    def _compare_enum(self, old: Schema, new: Schema, path: str) -> None:
        before, after = set(map(str, old.get("enum", ()))), set(map(str, new.get("enum", ())))
        if before - after:
            self.problems.append(f"{path}: enum members removed: {sorted(before - after)}")
        if after - before and before:
            self.problems.append(f"{path}: enum members added: {sorted(after - before)}")

    def _compare_properties(self, old: Schema, new: Schema, path: str) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        for field in sorted(old_props):
            if field not in new_props:
                self.problems.append(f"{path}.{field}: field removed")
            else:
                self.compare(old_props[field], new_props[field], f"{path}.{field}")
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for field in sorted(new_required - old_required):
            self.problems.append(f"{path}.{field}: newly required")
        for field in sorted(old_required - new_required):
            if field in new_props:
                self.problems.append(f"{path}.{field}: no longer required")

    def _compare_alternatives(self, old: Schema, new: Schema, path: str) -> None:
        for key in ("anyOf", "oneOf", "allOf"):
            before, after = old.get(key, []), new.get(key, [])
            if len(before) != len(after):
                self.problems.append(
                    f"{path}: {key} changed from {len(before)} to {len(after)} alternatives"
                )
                continue
            for index, (a, b) in enumerate(zip(before, after, strict=True)):
                self.compare(a, b, f"{path}<{key}[{index}]>")


def _resolve(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        ref = str(schema["$ref"])
        if not ref.startswith("#/$defs/"):
            return schema
        schema = root.get("$defs", {})[ref.removeprefix("#/$defs/")]
    return schema

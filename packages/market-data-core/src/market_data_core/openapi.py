"""The OpenAPI specs of the platform's HTTP services: errors declared as core's ``Problem``
(``application/problem+json``), bearer-token security, and the spec as committed text for
the drift checks (``mds openapi``, ``mdo openapi``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from market_data_core.problems import PROBLEM_MEDIA_TYPE, Problem

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["PROBLEM_REF", "bearer_scheme", "spec_text", "use_problem_for_errors"]

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_JSON = "application/json"


def bearer_scheme(description: str) -> dict[str, Any]:
    """The ``securitySchemes`` of a service whose protected routes take a bearer token."""
    return {"bearerAuth": {"type": "http", "scheme": "bearer", "description": description}}


def use_problem_for_errors(
    spec: dict[str, Any], *, bearer: dict[str, Any], secured_prefix: str
) -> None:
    """Every error answer of ``spec`` is core's ``Problem`` as ``application/problem+json``
    (FastAPI's own 422 included; an error declaring another model keeps it); the routes
    under ``secured_prefix`` declare the ``bearer`` scheme."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    generated = TypeAdapter(Problem).json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(generated.pop("$defs", {}))
    schemas["Problem"] = generated
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    spec["components"]["securitySchemes"] = bearer
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "invalid request: what and where"}
            for status, response in responses.items():
                schema = response.get("content", {}).get(_JSON, {}).get("schema")
                if int(status) >= 400 and schema in (None, PROBLEM_REF):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}
            if path.startswith(secured_prefix):
                operation["security"] = [{"bearerAuth": []}]


def spec_text(app: FastAPI) -> str:
    """The app's spec as stable, sorted JSON text (what the committed file holds)."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"

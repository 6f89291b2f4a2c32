"""One error body for every 4xx the service answers: ``{"detail": ..., "errors": [...]}``.

Validation errors list ``{"loc", "msg", "type"}`` per problem (the item index and field for
a batch) and never echo the input back.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

__all__ = ["NOT_JSON", "Problem", "problem", "validation_errors", "validation_handler"]


class ProblemItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    detail: str
    errors: list[ProblemItem] = []


NOT_JSON: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "the body is not JSON text (e.g. not UTF-8)"}
}
"""The answer of a route whose JSON body FastAPI parses, to bytes that are not text."""


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


def problem(
    status: int, detail: str, *, retry_after: int | None = None, errors: Any = ()
) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": detail, "errors": list(errors)}, status, headers=headers)


async def validation_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem(422, "invalid request", errors=validation_errors(exc.errors()))

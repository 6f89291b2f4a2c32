"""One error body for every 4xx and 5xx the service answers: core's ``Problem`` (RFC 9457,
``application/problem+json``): ``type``, ``title``, ``status``, ``detail``, ``instance``
and ``errors``, a list of ``{"loc", "msg", "type"}`` (the item index and field for a batch).
Validation errors never echo the input back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from market_data_core import PROBLEM_MEDIA_TYPE, Problem, ProblemItem

__all__ = [
    "NOT_JSON",
    "Problem",
    "http_error_handler",
    "problem",
    "validation_errors",
    "validation_handler",
]

NOT_JSON: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "the body is not JSON text (e.g. not UTF-8)"}
}
"""The answer of a route whose JSON body FastAPI parses, to bytes that are not text."""


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


def problem(
    status: int,
    detail: str,
    *,
    retry_after: int | None = None,
    errors: Any = (),
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    """The ``application/problem+json`` answer of ``status``."""
    body = Problem.of(
        status,
        detail,
        errors=tuple(ProblemItem.model_validate(e) for e in errors),
        instance=instance,
    )
    answer_headers = dict(headers or {})
    if retry_after is not None:
        answer_headers["Retry-After"] = str(retry_after)
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status,
        headers=answer_headers or None,
        media_type=PROBLEM_MEDIA_TYPE,
    )


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    return problem(422, "invalid request", errors=errors, instance=request.url.path)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's and Starlette's errors (404, 405, 401 of the admin routes...) as problems."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, str(exc.detail), headers=headers, instance=request.url.path)

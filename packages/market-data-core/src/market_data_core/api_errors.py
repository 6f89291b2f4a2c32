"""The error answers of the platform's HTTP services (``mds serve``, ``mdo serve``): core's
``Problem`` as ``application/problem+json``, and the FastAPI exception handlers that answer
FastAPI's and Starlette's own errors that way.

FastAPI and Starlette are imported when an answer is made, never by importing this module:
only the services need them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from market_data_core.problems import PROBLEM_MEDIA_TYPE, Problem, ProblemItem

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

__all__ = [
    "NOT_JSON",
    "Responses",
    "add_problem_handlers",
    "declared",
    "http_error_problem",
    "problem",
    "validation_items",
    "validation_problem",
]

Responses = dict[int | str, dict[str, Any]]
"""A route's declared answers (FastAPI's ``responses=``)."""


def declared(status: int, description: str) -> Responses:
    """A route's error answer of ``status`` declared as a ``Problem`` (for OpenAPI)."""
    return {status: {"model": Problem, "description": description}}


NOT_JSON: Responses = declared(400, "the body is not JSON text (e.g. not UTF-8)")
"""The answer of a route whose JSON body FastAPI parses, to bytes that are not text."""


def problem(
    status: int,
    detail: str,
    *,
    errors: Iterable[ProblemItem | Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    """The ``application/problem+json`` answer of ``status`` (``Retry-After`` when
    ``retry_after`` is given)."""
    from fastapi.responses import JSONResponse  # noqa: PLC0415 - the services only

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


def validation_items(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Where and what of pydantic's or FastAPI's errors, never the rejected input."""
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


async def validation_problem(request: Request, exc: Exception) -> JSONResponse:
    """A ``RequestValidationError`` as a 422 problem listing what and where."""
    from fastapi.exceptions import RequestValidationError  # noqa: PLC0415

    assert isinstance(exc, RequestValidationError)
    errors = validation_items(exc.errors())
    return problem(422, "invalid request", errors=errors, instance=request.url.path)


async def http_error_problem(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's and Starlette's errors (404, 405, 401...) as problems, their headers kept."""
    from starlette.exceptions import HTTPException  # noqa: PLC0415

    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, str(exc.detail), headers=headers, instance=request.url.path)


def add_problem_handlers(app: FastAPI) -> None:
    """Answer every ``HTTPException`` and ``RequestValidationError`` as a problem."""
    from fastapi.exceptions import RequestValidationError  # noqa: PLC0415
    from starlette.exceptions import HTTPException  # noqa: PLC0415

    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(HTTPException, http_error_problem)

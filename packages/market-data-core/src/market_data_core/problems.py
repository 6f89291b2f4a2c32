"""Problem details: the body of every error answer of the platform's HTTP services.

``Problem`` follows RFC 9457 (``application/problem+json``): ``type`` (a URI naming the
kind of problem, ``about:blank`` when the status says it all), ``title`` (the status'
phrase), ``status``, ``detail`` (what went wrong here, for a human) and ``instance`` (the
request path), plus one extension member, ``errors``: what was wrong and where, one item
per problem (``loc`` is the item index and field of a batch, or ``["query", "limit"]``).
Problems never echo the rejected input back.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Self

from pydantic import Field, StringConstraints

from market_data_core._base import PeerModel

__all__ = ["PROBLEM_MEDIA_TYPE", "Problem", "ProblemItem"]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_Text = Annotated[str, StringConstraints(max_length=4096)]


class ProblemItem(PeerModel):
    """One thing wrong with a request: where (``loc``) and what (``msg``, ``type``)."""

    loc: tuple[str | int, ...] = ()
    msg: _Text
    type: Annotated[str, StringConstraints(max_length=128)]


class Problem(PeerModel):
    """An RFC 9457 problem details object; see the module docstring."""

    type: Annotated[str, StringConstraints(max_length=512)] = "about:blank"
    title: Annotated[str, StringConstraints(max_length=256)]
    status: Annotated[int, Field(ge=400, le=599)]
    detail: _Text
    instance: Annotated[str, StringConstraints(max_length=2048)] | None = None
    errors: tuple[ProblemItem, ...] = ()

    @classmethod
    def of(
        cls,
        status: int,
        detail: str,
        *,
        errors: tuple[ProblemItem, ...] = (),
        instance: str | None = None,
    ) -> Self:
        """The problem of an HTTP ``status`` (its phrase as the title), ``detail`` cut to fit."""
        return cls(
            title=HTTPStatus(status).phrase,
            status=status,
            detail=detail[:4096],
            instance=None if instance is None else instance[:2048],
            errors=errors,
        )

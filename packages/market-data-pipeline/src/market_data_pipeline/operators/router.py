"""``router``: send each row to the output named for its key.

The key is a field's value (``field``) or what a registered key function returns (``fn``).
``routes`` maps output names to the values they take::

    - id: by_venue
      type: router
      params:
        field: exchange
        routes: {nasdaq: [XNAS, XBOS], nyse: [XNYS, ARCX]}
        default: other

A row whose key is in no route goes to ``default`` (an output of its own, or one of the
routes). Without a ``default`` it goes to an output named ``unrouted`` and is counted as
``unrouted``: nothing is silently lost. Either way every row goes to exactly one output and
rows keep their order within it. A route may list ``null`` to take rows without a key.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from market_data_pipeline.components import Emit, Operator, Params
from market_data_pipeline.functions import KeySelector
from market_data_pipeline.operators.partition import split_rows

__all__ = ["UNROUTED", "Router", "RouterParams"]

UNROUTED: Final = "unrouted"
"""The output of rows that match no route when the router has no ``default``."""
_PORT: Final = re.compile(r"^[A-Za-z0-9_\-]+$")


class RouterParams(Params):
    """Either ``field`` or ``fn`` gives the key; ``routes`` maps outputs to key values."""

    field: str | None = None
    fn: str | None = None
    routes: dict[str, list[str | bool | int | float | None]] = Field(min_length=1)
    default: str | None = None
    """The output of rows in no route (default: ``unrouted``, counted)."""


class Router(Operator[RouterParams]):
    """Sends each row to the output whose route lists its key (else ``default``)."""

    Params = RouterParams
    description: ClassVar[str] = "Send rows to named outputs by a field's value or a key function."

    def __init__(self, node_id: str, params: RouterParams) -> None:
        super().__init__(node_id, params)
        self._keys = KeySelector(field=params.field, fn=params.fn, operator="router")
        self._outputs = _outputs(params.routes, params.default)
        self._fallback = self._outputs.index(params.default or UNROUTED)
        """Index of the output for rows in no route."""
        values, owners = _value_set(params.routes)
        self._values = values
        # the output of each value, then one more slot: the fallback, for keys in no route
        self._owners = np.append(np.array(owners, dtype=np.intp), self._fallback)
        self._typed: dict[pa.DataType, pa.Array] = {}

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._outputs

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        if batch.num_rows == 0:
            return
        keys = self._keys(batch)
        if pa.types.is_dictionary(keys.type):
            keys = keys.cast(keys.type.value_type)
        found = pc.index_in(keys, value_set=self._value_set(keys.type))
        positions = pc.fill_null(found, len(self._owners) - 1).to_numpy()
        targets = self._owners[positions]
        if self.params.default is None:
            unrouted = int(np.count_nonzero(targets == self._fallback))
            if unrouted:
                self.context.count(UNROUTED, unrouted)
        parts = split_rows(batch, targets, len(self._outputs))
        for port, part in zip(self._outputs, parts, strict=True):
            if part.num_rows:
                await emit(part, port)

    def _value_set(self, type_: pa.DataType) -> pa.Array:
        """The routes' values as the key's type (cached per type)."""
        if type_ not in self._typed:
            try:
                self._typed[type_] = self._values.cast(type_)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
                msg = f"router: the routes' values do not fit keys of type {type_}: {error}"
                raise ValueError(msg) from None
        return self._typed[type_]


Routes = dict[str, list[str | bool | int | float | None]]


def _outputs(routes: Routes, default: str | None) -> tuple[str, ...]:
    names = list(routes)
    if default is None:
        if UNROUTED in routes:
            msg = f"a route is named {UNROUTED!r}: name the default output too"
            raise ValueError(msg)
        names.append(UNROUTED)
    elif default not in routes:
        names.append(default)
    for name in names:
        if not _PORT.match(name):
            msg = f"output name {name!r} must match {_PORT.pattern}"
            raise ValueError(msg)
    return tuple(names)


def _value_set(routes: Routes) -> tuple[pa.Array, list[int]]:
    """All the routes' values (one array) and the output index of each."""
    owner_of: dict[Any, str] = {}
    values: list[Any] = []
    owners: list[int] = []
    for index, (name, listed) in enumerate(routes.items()):
        for value in listed:
            if value in owner_of:
                msg = f"value {value!r} is in two routes: {owner_of[value]!r} and {name!r}"
                raise ValueError(msg)
            owner_of[value] = name
            values.append(value)
            owners.append(index)
    try:
        return pa.array(values), owners
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
        msg = f"the routes' values must be of one type: {error}"
        raise ValueError(msg) from None

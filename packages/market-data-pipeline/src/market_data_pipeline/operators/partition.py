"""``hash_partition``: split a stream into N partitions by a key, the same way everywhere.

A row goes to output ``p{i}`` with ``i = mmh3.hash(str(key), seed=0, signed=False) % N``
(:func:`partition_of`): stable across processes, machines and runs (unlike Python's
``hash``), so N workers that consume partitions of a Redis stream agree on who owns which
symbol. A null key counts as ``""`` (partition 0). Every row goes to exactly one output, and
rows keep their order within it.

The hash is computed once per distinct key of a batch, then taken for every row.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mmh3
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from market_data_pipeline.components import Emit, Operator, Params

__all__ = [
    "HashPartition",
    "HashPartitionParams",
    "partition_of",
    "partitions_of",
    "split_rows",
]


def partition_of(key: str, partitions: int) -> int:
    """The partition (``0..partitions-1``) that owns ``key``: the same in every process."""
    if partitions < 1:
        msg = f"partitions must be >= 1, not {partitions}"
        raise ValueError(msg)
    return mmh3.hash(key, seed=0, signed=False) % partitions


def partitions_of(column: pa.Array | pa.ChunkedArray, partitions: int) -> npt.NDArray[np.intp]:
    """:func:`partition_of` for every value of ``column`` (``str()`` of non-strings)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    distinct = pc.unique(column)
    owners = np.array(
        [partition_of(_text(value), partitions) for value in distinct.to_pylist()],
        dtype=np.intp,
    )
    index = pc.index_in(column, value_set=distinct)
    positions: npt.NDArray[np.intp] = owners[np.asarray(index, dtype=np.intp)]
    return positions


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def split_rows(batch: pa.Table, targets: npt.NDArray[np.intp], count: int) -> list[pa.Table]:
    """``batch`` cut into ``count`` tables: row ``r`` goes to table ``targets[r]``, in order."""
    sizes = np.bincount(targets, minlength=count)
    if np.count_nonzero(sizes) <= 1:
        return [batch if size else batch.slice(0, 0) for size in sizes.tolist()]
    order = np.argsort(targets, kind="stable")
    grouped = batch.take(pa.array(order))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).tolist()
    return [grouped.slice(start, size) for start, size in zip(starts, sizes.tolist(), strict=True)]


class HashPartitionParams(Params):
    key: str = "symbol"
    """The field whose value decides the partition."""
    partitions: int = Field(ge=1)
    """N: the outputs are ``p0`` .. ``p{N-1}``."""


class HashPartition(Operator[HashPartitionParams]):
    """Sends each row to output ``p{partition_of(key, N)}``."""

    Params = HashPartitionParams
    description: ClassVar[str] = "Split rows into N outputs p0..pN-1 by mmh3 hash of a key."

    def __init__(self, node_id: str, params: HashPartitionParams) -> None:
        super().__init__(node_id, params)
        self._outputs = tuple(f"p{i}" for i in range(params.partitions))

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._outputs

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        if batch.num_rows == 0:
            return
        key = self.params.key
        if key not in batch.column_names:
            msg = (
                f"hash_partition: the batch has no field {key!r} ({', '.join(batch.column_names)})"
            )
            raise ValueError(msg)
        targets = partitions_of(batch.column(key), self.params.partitions)
        for port, part in zip(
            self._outputs, split_rows(batch, targets, len(self._outputs)), strict=True
        ):
            if part.num_rows:
                await emit(part, port)

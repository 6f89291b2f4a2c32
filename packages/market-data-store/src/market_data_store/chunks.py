"""What the write path carries: explicit chunks of records, and batches of them.

A producer's call enters the write coordinator's queue as one chunk:

- :class:`ModelChunk`: a run of core models (of any kinds), as a tuple the queue owns;
- :class:`ArrowChunk`: a conformed Arrow table of one kind, which stays columnar all the way
  to the backend (sliced without copying, turned into models only when a record of it must be
  dead-lettered or a writer knows only models).

A :class:`Batch` is consecutive records of the queue as chunks: what a worker hands to the
writer. It is a sequence of records for writers that only know models (iterating converts the
Arrow chunks); backends read ``chunks`` and write tables and models apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import pyarrow as pa

from market_data_core import Bar, Quote, Signal, Trade
from market_data_core.columns import Kind, to_models

__all__ = ["KIND_OF_MODEL", "ArrowChunk", "Batch", "Chunk", "ModelChunk", "Record", "as_chunk"]

Record = Bar | Trade | Quote | Signal
"""What the store persists (job runs and audit records have their own calls)."""

KIND_OF_MODEL: dict[type[Record], Kind] = {
    Bar: Kind.BARS,
    Trade: Kind.TRADES,
    Quote: Kind.QUOTES,
    Signal: Kind.SIGNALS,
}
"""The columnar kind of each record model."""


@dataclass(frozen=True, slots=True)
class ModelChunk:
    """A run of core models, in the order a producer gave them."""

    models: tuple[Record, ...]

    def __len__(self) -> int:
        return len(self.models)

    def part(self, start: int, stop: int) -> ModelChunk:
        """Records ``[start, stop)`` of the chunk."""
        return ModelChunk(self.models[start:stop])

    def to_models(self) -> list[Record]:
        return list(self.models)


@dataclass(frozen=True, slots=True)
class ArrowChunk:
    """A conformed table of one kind: ``len`` is its rows, ``part`` (and a contiguous slice)
    is zero-copy; ``to_models`` builds the models (for the dead-letter store)."""

    kind: Kind
    table: pa.Table

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, index: slice) -> ArrowChunk:
        if index.step not in (None, 1):
            msg = "an ArrowChunk supports contiguous slices only"
            raise TypeError(msg)
        start, stop, _ = index.indices(self.table.num_rows)
        return self.part(start, stop)

    def part(self, start: int, stop: int) -> ArrowChunk:
        """Rows ``[start, stop)`` of the chunk, without copying."""
        return ArrowChunk(self.kind, self.table.slice(start, max(stop - start, 0)))

    def to_models(self) -> list[Record]:
        models: list[Record] = to_models(self.table, self.kind, lenient=True)
        return models


Chunk = ModelChunk | ArrowChunk
"""One producer's records in the queue (or part of them)."""


def as_chunk(records: Chunk | Sequence[Record]) -> Chunk:
    """``records`` as a chunk: chunks as they are, a sequence of models as a ``ModelChunk``
    (its own tuple: a caller's list may change after its call returns)."""
    if isinstance(records, ModelChunk | ArrowChunk):
        return records
    return ModelChunk(tuple(records))


class Batch(Sequence[Record]):
    """Consecutive records as chunks: its length is their records, a slice is a ``Batch`` of
    sliced chunks (no copy), iterating yields the records as models. Backends read ``chunks``."""

    __slots__ = ("_size", "chunks")

    def __init__(self, chunks: Sequence[Chunk | Sequence[Record]] = ()) -> None:
        self.chunks: tuple[Chunk, ...] = tuple(as_chunk(c) for c in chunks if len(c))
        self._size = sum(map(len, self.chunks))

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Record]:
        for chunk in self.chunks:
            yield from chunk.to_models()

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Batch: ...
    def __getitem__(self, index: int | slice) -> Record | Batch:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._size)
            if step != 1:
                msg = "a Batch slices contiguously only"
                raise ValueError(msg)
            return self.part(start, stop)
        position = index + self._size if index < 0 else index
        if not 0 <= position < self._size:
            raise IndexError(index)
        return next(iter(self.part(position, position + 1)))

    def part(self, start: int, stop: int) -> Batch:
        """Records ``[start, stop)``: whole chunks as they are, the ends sliced."""
        parts: list[Chunk] = []
        offset = 0
        for chunk in self.chunks:
            end = offset + len(chunk)
            if end > start and offset < stop:
                low, high = max(start - offset, 0), min(stop, end) - offset
                parts.append(chunk if (low, high) == (0, len(chunk)) else chunk.part(low, high))
            offset = end
            if offset >= stop:
                break
        return Batch(parts)

    def joined(self, other: Batch) -> Batch:
        """This batch followed by ``other``."""
        return Batch((*self.chunks, *other.chunks))

    def __repr__(self) -> str:
        return f"Batch({self._size} records in {len(self.chunks)} chunks)"

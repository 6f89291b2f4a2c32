"""``merge``: several inputs into one stream (the runtime's channels already fan in)."""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from market_data_pipeline.components import Emit, NoParams, Operator

__all__ = ["Merge"]


class Merge(Operator[NoParams]):
    """Forwards batches from all its inputs, in arrival order, unchanged."""

    Params = NoParams
    description: ClassVar[str] = "Merge several inputs into one stream (arrival order)."

    async def process(self, batch: pa.Table, emit: Emit) -> None:
        await emit(batch)

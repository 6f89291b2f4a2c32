"""``market_data_core.ipc.measure``: what an Arrow IPC stream decodes to, from its metadata
alone, equal to what pyarrow allocates when it decodes the stream; a stream it cannot read
is a ``ValueError``, never a crash."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_data_core.ipc import measure


def _stream(table: pa.Table, compression: str | None, chunk: int | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        for batch in table.to_batches(max_chunksize=chunk):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


tables = st.builds(
    lambda ints, texts, dictionary: pa.table(
        {
            "i": pa.array(ints[: len(texts)], pa.int64()),
            "s": pa.array(texts[: len(ints)]),
            "d": pa.array(texts[: len(ints)]).dictionary_encode()
            if dictionary
            else pa.nulls(min(len(ints), len(texts)), pa.float64()),
        }
    ),
    st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), max_size=300),
    st.lists(st.text(max_size=40) | st.none(), max_size=300),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(
    table=tables,
    compression=st.sampled_from([None, "lz4", "zstd"]),
    chunk=st.none() | st.integers(1, 100),
)
def test_the_extent_is_what_decoding_allocates(
    table: pa.Table, compression: str | None, chunk: int | None
) -> None:
    body = _stream(table, compression, chunk)
    extent = measure(body)
    decoded = pa.ipc.open_stream(body).read_all()
    assert extent.rows == decoded.num_rows == table.num_rows
    assert extent.decoded_bytes == decoded.get_total_buffer_size()


def test_a_compression_bomb_is_measured_without_decompressing() -> None:
    """200 MB of text in a body of well under 1 MB: measured without allocating it."""
    table = pa.table({"s": pa.array(["y" * 1000] * 200_000)})
    body = _stream(table, "zstd")
    del table
    assert len(body) < 1024 * 1024
    pool = pa.default_memory_pool()
    before = pool.bytes_allocated()
    extent = measure(body)
    assert pool.bytes_allocated() - before < 1024 * 1024
    assert (extent.rows, extent.decoded_bytes) == (200_000, 200_000 * 1000 + 200_001 * 4)


@pytest.mark.parametrize(
    "body",
    [b"", b"not arrow at all", b"\xff\xff\xff\xff\xff\xff\xff\x7f" + b"\x00" * 12],
    ids=["empty", "text", "bad-length"],
)
def test_what_is_not_a_stream_is_a_value_error(body: bytes) -> None:
    if body == b"":
        assert measure(body).rows == 0  # an empty stream holds nothing
        return
    with pytest.raises(ValueError):  # noqa: PT011
        measure(body)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_corrupted_stream_is_a_value_error_or_measured(data: st.DataObject) -> None:
    """Flip, cut or overwrite bytes of a real stream: ``measure`` answers or raises
    ``ValueError``; never another exception."""
    body = bytearray(_stream(pa.table({"i": list(range(50)), "s": ["ab"] * 50}), "lz4"))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.integers(0, 255))
    body = body[: data.draw(st.integers(0, len(body)))]
    try:
        extent = measure(bytes(body))
    except ValueError:
        return
    assert extent.rows >= 0
    assert extent.decoded_bytes >= 0

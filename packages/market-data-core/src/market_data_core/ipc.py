"""How large an Arrow IPC stream is once decoded, read from its metadata alone.

An Arrow IPC stream may compress its buffers (LZ4 or ZSTD): a few kilobytes on the wire can
declare millions of rows or gigabytes of text. ``measure`` reads each message's metadata
(the flatbuffers ``Message``: a record batch's row count and its buffers) and, for a
compressed buffer, the uncompressed length it starts with, without decompressing or
allocating anything, so that a service can refuse a body before decoding it::

    extent = measure(body)
    if extent.rows > max_rows or extent.decoded_bytes > max_bytes:
        ...  # 413, nothing decoded

Dictionary batches count in ``decoded_bytes`` (and not in ``rows``). A stream this cannot
read raises ``ValueError``; it would not decode either.

Needs the ``arrow`` extra (pyarrow).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pyarrow as pa

__all__ = ["StreamExtent", "measure"]

_RECORD_BATCH = 3
_DICTIONARY_BATCH = 2
_NOT_COMPRESSED = -1


@dataclass(frozen=True, slots=True)
class StreamExtent:
    """What decoding a stream would produce: ``rows`` of its record batches, and
    ``decoded_bytes`` of all its buffers (record and dictionary batches) uncompressed."""

    rows: int
    decoded_bytes: int
    batches: int


class _Table:
    """A flatbuffers table: its fields by slot, read from ``data`` at ``position``."""

    __slots__ = ("data", "position", "vtable", "vtable_size")

    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position
        self.vtable = position - _unpack("<i", data, position)
        self.vtable_size = _unpack("<H", data, self.vtable)

    def _field(self, slot: int) -> int:
        entry = 4 + 2 * slot
        if entry + 2 > self.vtable_size:
            return 0
        return _unpack("<H", self.data, self.vtable + entry)

    def scalar(self, slot: int, fmt: str, default: int = 0) -> int:
        offset = self._field(slot)
        return default if offset == 0 else _unpack(fmt, self.data, self.position + offset)

    def _target(self, slot: int) -> int | None:
        offset = self._field(slot)
        if offset == 0:
            return None
        at = self.position + offset
        return at + _unpack("<I", self.data, at)

    def table(self, slot: int) -> _Table | None:
        target = self._target(slot)
        return None if target is None else _Table(self.data, target)

    def structs(self, slot: int, size: int) -> list[tuple[int, int]]:
        """A vector of structs of two int64 (``FieldNode``, ``Buffer``)."""
        target = self._target(slot)
        if target is None:
            return []
        count = _unpack("<I", self.data, target)
        start = target + 4
        if count < 0 or start + count * size > len(self.data):
            msg = "a vector runs past the end of the metadata"
            raise ValueError(msg)
        return [struct.unpack_from("<qq", self.data, start + i * size) for i in range(count)]


def _unpack(fmt: str, data: bytes, at: int) -> int:
    if at < 0 or at + struct.calcsize(fmt) > len(data):
        msg = "an offset points outside the message metadata"
        raise ValueError(msg)
    value: int = struct.unpack_from(fmt, data, at)[0]
    return value


def _batch_bytes(batch: _Table, body: pa.Buffer | None) -> int:
    """The bytes of a record batch's buffers once decompressed (a compressed buffer starts
    with its uncompressed length as an int64, -1 when it was left uncompressed)."""
    buffers = batch.structs(2, 16)
    compressed = batch.table(3) is not None
    total = 0
    view = memoryview(body) if body is not None else memoryview(b"")
    for offset, length in buffers:
        if offset < 0 or length < 0 or offset + length > len(view):
            msg = "a buffer lies outside the message body"
            raise ValueError(msg)
        if not compressed or length == 0:
            total += length
            continue
        if length < 8:
            msg = "a compressed buffer is shorter than its length prefix"
            raise ValueError(msg)
        declared = struct.unpack_from("<q", view, offset)[0]
        if declared < _NOT_COMPRESSED:
            msg = "a compressed buffer declares a negative length"
            raise ValueError(msg)
        total += length - 8 if declared == _NOT_COMPRESSED else declared
    return total


def measure(data: bytes | pa.Buffer) -> StreamExtent:
    """Rows and decoded bytes of an Arrow IPC stream, from its metadata; see the module
    docstring. Raises ``ValueError`` when the stream cannot be read."""
    rows = decoded = batches = 0
    try:
        reader = pa.ipc.MessageReader.open_stream(data)
        for message in reader:
            metadata = message.metadata.to_pybytes()
            root = _Table(metadata, _unpack("<I", metadata, 0))
            header_type = root.scalar(1, "<B")
            header = root.table(2)
            if header is None or header_type not in (_RECORD_BATCH, _DICTIONARY_BATCH):
                continue
            if header_type == _DICTIONARY_BATCH:
                header = header.table(1)
                if header is None:
                    continue
            else:
                length = header.scalar(0, "<q")
                if length < 0:
                    msg = "a record batch declares a negative length"
                    raise ValueError(msg)
                rows += length
                batches += 1
            decoded += _batch_bytes(header, message.body)
    except (pa.ArrowException, OSError, struct.error) as exc:
        raise ValueError(str(exc).splitlines()[0][:200] if str(exc) else repr(exc)) from exc
    return StreamExtent(rows=rows, decoded_bytes=decoded, batches=batches)

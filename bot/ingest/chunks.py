"""What the readers of a file hand the writer: validated chunks, read through a stream that counts its bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.storage import RawPacker

CHUNK_RECORDS = 5000  # records per chunk handed to the store
READ_BYTES = 1 << 20

Progress = Callable[[int], None]  # called with the bytes of the file read so far
Item = tuple[int, Any, "str | None"]  # (line number, the record, or a problem with it)


@dataclass
class Chunk:
    """Validated records of one stretch of a file, or the errors found there; and how far reading got."""

    rows: list[Sequence[Any]]  # in Contact field order
    errors: list[str]
    records: int
    bytes_read: int
    flat: list[Any] | None = None  # instead of rows: their values one after another (from the reader process)
    final: bool = False  # nothing after this chunk can be read reliably (a CSV structure error)
    ignored: int = 0  # platform events in this stretch that are not contacts (files of events only)
    packed: Sequence[Any] | None = None  # instead of rows: as the store's row packer made them (reader process)
    raw_packer: RawPacker | None = None  # the raws (of ``flat``) are as this store's packer keeps them, not text


class SplitInsideRecord(Exception):
    """A block of a CSV file ended inside a quoted cell: the cut was not between records."""


class CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it (for the progress bar)."""

    def __init__(self, stream: IO[bytes], offset: int = 0):
        self._stream = stream
        self.bytes_read = offset  # where in the file the stream starts (a block of it may start further on)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.bytes_read += size
        return size

    def read_block(self) -> bytes:
        data = self._stream.read(READ_BYTES)
        self.bytes_read += len(data)
        return data

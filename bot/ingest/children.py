"""Reading a big file in child processes while this one writes: blocks of whole lines, stored in file order.

A JSONL or CSV file is cut at line ends into blocks that READERS processes read in turn (block i by reader
i % READERS) while the writer stores them in file order: on two cores the readers, not the writer, were the
slower side. A CSV cut that falls inside a quoted cell is detected (``SplitInsideRecord``), and the file is
then read again by one reader. A JSON array is read by one child. Chunks travel as one pickled flat list of
the rows' values in Contact field order, with repeated values shared (see ``_flat_values``).

A file of platform events is cut between two events after every EVENT_BLOCK_BYTES (``_event_blocks``), found by
reading a little there, and each reader reads only its own blocks: the files are big (a Connect CTR is ~2.5 KB),
and reading all of it in each reader, as for lines, cost ~5 us a CTR each. Line numbers, which events files
rarely have, are counted only for an error message.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from functools import partial
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, cast

from bot.ingest import csv_format, formats, jsonl_format
from bot.ingest.chunks import Chunk, CountingReader, SplitInsideRecord
from bot.ingest.events_format import EVENTS, MAX_EVENT_BYTES, OBJECT_GAP, EventMapper, event_chunks, newlines
from bot.storage import RawPacker
from metrics.records import Contact
from metrics.timeutil import load_zone

_QUEUE_CHUNKS = 4  # chunks in flight between a reader process and the writer: bounds memory
READERS = 2
BLOCK_BYTES = 1 << 20
# Platform events are bigger (a Connect CTR ~2.5 KB): a block then makes whole chunks (CHUNK_RECORDS), not a
# tenth of one. With 1 MiB blocks the writer got chunks of ~400 CTRs, and 1M CTRs took 82 s instead of 64 s.
EVENT_BLOCK_BYTES = 16 << 20


@dataclass
class _PackedChunk:
    """A chunk on its way from the reader process: the rows' values as one pickled flat list."""

    values: bytes
    errors: list[str]
    records: int
    bytes_read: int
    final: bool
    ignored: int
    packed: Sequence[Any] | None = None  # instead of values: as the store's row packer made them


_BLOCK_DONE = "block done"
Packer = Callable[[Sequence[Sequence[Any]]], Sequence[Any]]  # a store's row packer (``PacksImportRows``)


def read_in_children(
    path: Path,
    kind: str,
    name: str,
    zone: tzinfo,
    readers: int,
    block_bytes: int,
    events: EventMapper | None = None,
    packer: Packer | None = None,
    raw_packer: RawPacker | None = None,
    key_order: bool = True,
) -> Iterator[Chunk]:
    """The chunks of ``path`` in file order, read and validated by ``readers`` child processes while the
    caller writes. With one reader it reads the file whole; with more, each reads every ``readers``-th block
    (``_line_blocks``) and says when it is done with one, so the blocks are handed on in order. With
    ``packer`` (the store's: ``PacksImportRows``) the readers hand over its packed rows (``Chunk.packed``); with
    ``raw_packer`` (events only) they put each raw in the form the store keeps it (``Chunk.raw_packer``). With
    ``key_order`` each chunk's rows go in (source, id) order, as a store with rows writes them best."""
    context = multiprocessing.get_context("fork")
    zone_arg = getattr(zone, "key", None) or zone
    channels: list[multiprocessing.Queue[Any]] = []
    children = []
    for index in range(readers):
        channel: multiprocessing.Queue[Any] = context.Queue(maxsize=_QUEUE_CHUNKS)
        child = context.Process(
            target=_child_main,
            args=(
                str(path),
                kind,
                name,
                zone_arg,
                channel,
                index,
                readers,
                block_bytes,
                os.getpid(),
                events,
                packer,
                raw_packer,
                key_order,
            ),
            daemon=True,
        )
        child.start()
        channels.append(channel)
        children.append(child)
    try:
        block = 0
        while True:
            turn = block % readers
            try:
                item = channels[turn].get(timeout=1.0)
            except queue.Empty:
                if not children[turn].is_alive():
                    raise RuntimeError(f"{name}: the reader process stopped unexpectedly") from None
                continue
            if item is None:  # the reader whose turn it is has no more blocks: the file is done
                break
            if item == _BLOCK_DONE:
                block += 1
                continue
            if isinstance(item, tuple) and item and item[0] == "oserror":
                raise OSError(item[1])
            if isinstance(item, tuple) and item and item[0] == "failure":
                raise RuntimeError(f"{name}: reading failed: {item[1]}")
            if isinstance(item, SplitInsideRecord):
                raise item
            flat = pickle.loads(item.values) if item.packed is None else None
            chunk = Chunk(
                [], item.errors, item.records, item.bytes_read, flat=flat, ignored=item.ignored, packed=item.packed
            )
            chunk.raw_packer = raw_packer
            yield chunk
            if item.final:
                break
    finally:
        for child, channel in zip(children, channels, strict=True):
            if child.is_alive():
                child.terminate()
            child.join()
            channel.close()


def _exit_with_parent(parent_pid: int) -> None:
    """A reader never outlives its import: when the parent ends without stopping it (SIGKILL, or SIGTERM, which
    runs no clean-up), the reader ends too instead of holding its memory while blocked on a full queue. Linux
    delivers SIGKILL at once (PR_SET_PDEATHSIG); elsewhere a watcher thread notices within a fifth of a second."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the C library's prctl (Linux)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os._exit(1)

    if os.getppid() != parent_pid:  # the parent died before the death signal was set up
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


_PR_SET_PDEATHSIG = 1


def _child_main(
    path: str,
    kind: str,
    name: str,
    zone: object,
    channel: multiprocessing.Queue[Any],
    index: int = 0,
    readers: int = 1,
    block_bytes: int = BLOCK_BYTES,
    parent_pid: int | None = None,
    events: EventMapper | None = None,
    packer: Packer | None = None,
    raw_packer: RawPacker | None = None,
    key_order: bool = True,
) -> None:
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    gc.disable()  # the chunks are acyclic; collection passes over millions of young objects cost ~15%
    try:
        real_zone = load_zone(zone) if isinstance(zone, str) else cast(tzinfo, zone)
        shared: dict[Any, Any] = {}
        with open(path, "rb") as stream:
            raw_bytes = raw_packer is not None  # (the rows' raws are then bytes, packed here a chunk at a time)
            for chunks in _my_blocks(stream, kind, name, real_zone, index, readers, block_bytes, events, raw_bytes):
                for chunk in chunks:
                    if packer is not None:
                        values, rows = b"", packer(chunk.rows)
                    else:
                        if key_order:  # (stable: a key's rows keep their order)
                            chunk.rows.sort(key=_KEY)
                        flat = _flat_values(chunk.rows, shared)
                        if raw_packer is not None and flat:
                            flat[_RAW::_WIDTH] = raw_packer.pack_all(flat[_RAW::_WIDTH])
                        values, rows = pickle.dumps(flat, 5), None
                    packed = _PackedChunk(
                        values, chunk.errors, chunk.records, chunk.bytes_read, chunk.final, chunk.ignored, rows
                    )
                    channel.put(packed)
                if readers > 1:
                    channel.put(_BLOCK_DONE)
        channel.put(None)
    except SplitInsideRecord as split:
        channel.put(split)
    except OSError as problem:
        channel.put(("oserror", problem.strerror or str(problem)))
    except BaseException as problem:  # reported to the parent as a failure, never silently lost
        channel.put(("failure", f"{type(problem).__name__}: {problem}"))
    finally:
        channel.close()
        channel.join_thread()


def _my_blocks(
    stream: IO[bytes],
    kind: str,
    name: str,
    zone: tzinfo,
    index: int,
    readers: int,
    block_bytes: int,
    events: EventMapper | None = None,
    raw_bytes: bool = False,
) -> Iterator[Iterator[Chunk]]:
    """The chunks of each block reader ``index`` of ``readers`` reads (the whole file when it is the only one)."""
    if readers == 1:
        yield formats.read_chunks(stream, kind, name, zone, events, raw_bytes)
        return
    if kind == EVENTS:
        assert events is not None
        fd = stream.fileno()
        lines = _LineNumbers(fd)
        for number, (start, end) in enumerate(_event_blocks(fd, block_bytes)):
            if number % readers == index:
                counter = CountingReader(cast(IO[bytes], _FileSlice(fd, start, end)), start)
                line_at_start = partial(lines.at, start)
                yield event_chunks(
                    counter,
                    name,
                    zone,
                    events,
                    first_line=line_at_start,
                    block_end=end < lines.size,
                    raw_bytes=raw_bytes,
                )
        return
    columns: list[str] | None = None
    for number, (offset, first_line, data, last) in enumerate(_line_blocks(stream, block_bytes)):
        if kind == "csv" and number == 0:
            columns = csv_format.csv_columns(data)
        if number % readers != index:
            continue
        counter = CountingReader(io.BytesIO(data), offset)
        if kind == "jsonl":
            yield jsonl_format.jsonl_chunks(counter, name, zone, first_line=first_line)
        elif number == 0:  # the header, then records
            yield csv_format.csv_chunks(counter, name, zone, block_end=not last)
        elif columns is not None:  # (else block 0 reports what is wrong with the header)
            yield csv_format.csv_chunks(counter, name, zone, columns=columns, first_line=first_line, block_end=not last)
        else:
            yield iter(())


def _line_cut(data: bytes) -> int:
    """Where a block of lines may end: after its last line end (0: nowhere yet)."""
    return data.rfind(b"\n") + 1


def _line_blocks(stream: IO[bytes], block_bytes: int) -> Iterator[tuple[int, int, bytes, bool]]:
    """The file in blocks of whole lines of about ``block_bytes``: (offset, number of the first line, the bytes,
    is it the last block). Every reader cuts the file the same way, as each reads all of it."""
    offset, line, carry = 0, 1, b""
    pending = (0, 1, b"")  # (an empty file is one empty block)
    while True:
        data = stream.read(block_bytes)
        if data:
            data = carry + data
            cut = _line_cut(data)
            if not cut:  # one line longer than a block: keep reading it
                carry = data
                continue
            block, carry = data[:cut], data[cut:]
        elif carry:
            block, carry = carry, b""
        else:
            yield (*pending, True)
            return
        if pending[2]:
            yield (*pending, False)
        pending = (offset, line, block)
        offset += len(block)
        line += newlines(block)


def _event_blocks(fd: int, block_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each block of a file of events: each ends at the first place after a multiple of
    ``block_bytes`` where one event may end and the next begin (``_object_cut_after``), the last at the end of
    the file. Every reader finds the same cuts; one that falls inside a string is found by the reader of the
    block before it, as for lines (``SplitInsideRecord``)."""
    size = os.fstat(fd).st_size
    start = 0
    while True:
        end = size if start + block_bytes >= size else _object_cut_after(fd, start + block_bytes, size)
        yield start, end
        if end >= size:
            return
        start = end


def _object_cut_after(fd: int, offset: int, size: int) -> int:
    """Where the first ``}`` at or after ``offset`` that whitespace and a ``{`` follow ends; the file's size if
    there is none within MAX_EVENT_BYTES (no event is longer: the rest of the file is then one block, read as a
    stream, and a reader holds at most that much here; a JSON array given as events read the whole file in
    each reader)."""
    window = 1 << 16
    while True:
        data = os.pread(fd, window, offset)
        if (gap := OBJECT_GAP.search(data)) is not None:
            return offset + gap.start() + 1
        if offset + len(data) >= size or window >= MAX_EVENT_BYTES:
            return size
        window *= 2


class _FileSlice(io.RawIOBase):
    """Bytes ``start`` to ``end`` of an open file, read at their offsets (the file's position is not used)."""

    def __init__(self, fd: int, start: int, end: int):
        self._fd = fd
        self._position = start
        self._end = end

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._position
        data = os.pread(self._fd, left if size < 0 else min(size, left), self._position)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _LineNumbers:
    """Line numbers at offsets of a file, counted only when asked (only an error message needs one), on from the
    last offset asked: a reader asks in file order, so a file with an error in every block is counted once, not
    once per block."""

    def __init__(self, fd: int):
        self._fd = fd
        self._offset = 0
        self._line = 1
        self.size = os.fstat(fd).st_size

    def at(self, offset: int) -> int:
        if offset < self._offset:
            self._offset, self._line = 0, 1
        stretch = _FileSlice(self._fd, self._offset, offset)
        self._line += sum(newlines(data) for data in iter(lambda: stretch.read(1 << 20), b""))
        self._offset = offset
        return self._line


# Columns with few distinct values (source, agent, team, queue, reason, channel, direction): one shared
# object per value lets pickle send each value once per chunk, and the writer unpack it once. Unpacking
# a chunk this way took a quarter of the time of a JSON array of rows (the writer is the busier side).
_REPEATED_COLUMNS = tuple(
    Contact._fields.index(name) for name in ("source", "agent", "team", "queue", "reason", "channel", "direction")
)
_SHARED_VALUES_MAX = 100_000
_KEY = itemgetter(Contact._fields.index("source"), Contact._fields.index("id"))
_RAW, _WIDTH = Contact._fields.index("raw"), len(Contact._fields)


def _flat_values(rows: list[Sequence[Any]], shared: dict[Any, Any]) -> list[Any]:
    """The rows' values one after another, repeated values replaced by one shared object each."""
    values = list(chain.from_iterable(rows))
    if len(shared) > _SHARED_VALUES_MAX:  # e.g. a free-text reason: keep memory bounded
        shared.clear()
    share = shared.setdefault
    for column in _REPEATED_COLUMNS:
        values[column::_WIDTH] = [share(value, value) for value in values[column::_WIDTH]]
    return values

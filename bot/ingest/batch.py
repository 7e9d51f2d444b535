"""One file, one atomic batch: its chunks stored in one transaction, or (any invalid record) none of them."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from itertools import chain
from pathlib import Path
from typing import IO, cast

from bot.ingest import children, formats
from bot.ingest.children import BLOCK_BYTES, EVENT_BLOCK_BYTES, READERS
from bot.ingest.chunks import Chunk, Progress, SplitInsideRecord
from bot.ingest.events_format import EVENTS, GZIP_MAGIC, EventMapper, head_samples
from bot.ingest.formats import STDIN
from bot.storage import ContactStore, PackedContacts, PacksImportRows, RawPacking, UpsertCounts
from metrics.records import Contact

PARALLEL_MIN_BYTES = 4 << 20  # smaller files are read in this process: a child costs ~50 ms to start


@dataclass
class FileResult:
    """What importing one file did: the counts if it was stored, else every error found in it."""

    name: str
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    records: int = 0
    errors: list[str] = field(default_factory=list)
    ignored: int = 0  # platform events that are not contacts (files of platform events only)

    @property
    def ok(self) -> bool:
        return not self.errors


def ingest_file(
    store: ContactStore,
    name: str,
    zone: tzinfo,
    *,
    stdin: IO[bytes] | None = None,
    progress: Progress | None = None,
    parallel: bool | None = None,
    readers: int = READERS,
    block_bytes: int | None = None,
    events: EventMapper | None = None,
) -> FileResult:
    """Import one file (``-`` reads JSONL from ``stdin``) as one atomic batch.

    ``parallel`` forces (True) or forbids (False) reading in child processes (``readers`` of them, taking
    blocks of about ``block_bytes`` in turn: by default BLOCK_BYTES, EVENT_BLOCK_BYTES for events); by
    default a regular file of at least PARALLEL_MIN_BYTES is read in parallel. With ``events`` the file holds
    a platform's events (JSON objects back to back, or a gzip of them, whatever its name), each mapped to a
    record by ``events``; read in child processes, they also compress the raws for a store that lets them
    (``RawPacking``), learning from the head of the file when the store has nothing to go by.
    """
    result = FileResult(name="<stdin>" if name == STDIN else name)
    opened: IO[bytes] | None = None
    try:
        kind = EVENTS if events is not None else formats.file_format(name)
        if name == STDIN:
            size = 0
            source = stdin if stdin is not None else _stdin_bytes()
            chunks = formats.read_chunks(source, kind, result.name, zone, events)
        else:
            path = Path(name)
            if path.is_dir():
                raise ValueError(f"{name}: is a directory, not a file")
            opened = path.open("rb")
            size = os.fstat(opened.fileno()).st_size
            use_child = parallel if parallel is not None else size >= PARALLEL_MIN_BYTES and path.is_file()
            if use_child:
                gzipped = opened.read(2) == GZIP_MAGIC  # (a gzip stream cannot be cut into blocks)
                opened.close()  # (opened first so that a missing or unreadable file is reported the same way)
                opened = None
                splits = kind in ("jsonl", "csv") or (kind == EVENTS and not gzipped)
                readers = readers if splits else 1
                block = block_bytes or (EVENT_BLOCK_BYTES if kind == EVENTS else BLOCK_BYTES)
                packer = store.row_packer() if isinstance(store, PacksImportRows) else None
                raw_packer = None
                if events is not None and isinstance(store, RawPacking):
                    raw_packer = store.raw_packer(head_samples(path, gzipped, result.name, zone, events))
                # Chunks in key order help a store with rows (each row's key is looked up); an empty store's initial
                # load appends them without a key index (SQLite), so the readers save the sort (~1.3 us a row).
                key_order = store.count_contacts() > 0
                chunks = children.read_in_children(
                    path, kind, result.name, zone, readers, block, events, packer, raw_packer, key_order
                )
            else:
                chunks = formats.read_chunks(opened, kind, result.name, zone, events)
    except OSError as problem:
        result.errors.append(f"{name}: cannot read: {problem.strerror or problem}")
        return result
    except ValueError as problem:
        result.errors.append(str(problem))
        return result
    try:
        _store_chunks(store, chunks, result, size, progress)
    except SplitInsideRecord:  # rolled back; a quoted cell spans a cut: read the file in one piece
        return ingest_file(store, name, zone, progress=progress, parallel=True, readers=1, events=events)
    except OSError as problem:
        result.errors.append(f"{result.name}: cannot read: {problem.strerror or problem}")
    finally:
        if opened is not None:
            opened.close()
    return result


class _Invalid(Exception):
    """Raised inside the store's transaction to roll it back when the file has an invalid record."""


def _store_chunks(
    store: ContactStore, chunks: Iterator[Chunk], result: FileResult, size: int, progress: Progress | None
) -> None:
    first = next(chunks, None)
    expected = 0
    if first is not None and size and first.bytes_read:
        # Once the first chunk is read the record size is known: tell the store how many records to expect.
        expected = int(first.records * size / first.bytes_read)
    try:
        with store.bulk(expected) as writer:
            for chunk in chain([first] if first is not None else [], chunks):
                result.records += chunk.records
                result.ignored += chunk.ignored
                if progress is not None:
                    progress(chunk.bytes_read)
                if chunk.errors:
                    result.errors.extend(chunk.errors)
                    raise _Invalid
                if chunk.packed is not None:
                    writer.add(cast(Sequence[Contact], chunk.packed))
                elif chunk.flat is not None:
                    writer.add(PackedContacts(chunk.flat, chunk.raw_packer))
                else:
                    writer.add(cast(list[Contact], chunk.rows))  # rows in Contact field order: the store indexes them
            result.counts = writer.counts
    except _Invalid:
        # Nothing of this file is stored; keep reading it so that every error is reported at once.
        for chunk in chunks:
            result.records += chunk.records
            result.errors.extend(chunk.errors)
            if progress is not None:
                progress(chunk.bytes_read)
        result.counts = UpsertCounts()
        result.ignored = 0


def _stdin_bytes() -> IO[bytes]:
    return sys.stdin.buffer

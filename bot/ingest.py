"""Bulk import of contact files: CSV, JSON arrays, JSONL/NDJSON and JSONL on stdin (no click here).

Each file is one batch: it is validated whole and stored in one transaction, or (if any record is invalid)
not at all, with every problem listed as ``file:line: field: message``. Files are independent of each other.

Reading streams, so memory stays flat whatever the file size. A file big enough to be worth it is read and
validated by child processes while this process writes what they have read: a JSONL or CSV file is cut at
line ends into blocks that READERS processes take in turn, and the blocks are stored in file order (a JSON
array is read by one child). Chunks travel as one pickled flat list of the rows' values in Contact field
order, with repeated values shared (see ``_flat_values``), handed to the store as ``PackedContacts`` (the
SQLite store writes that list as it is).
"""

from __future__ import annotations

import codecs
import csv
import gc
import io
import json
import multiprocessing
import os
import pickle
import queue
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from itertools import chain, compress
from pathlib import Path
from typing import IO, Any, cast

import orjson

from bot.storage import ContactStore, PackedContacts, UpsertCounts
from metrics.records import Contact, contact_row
from metrics.timeutil import load_zone

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
STDIN = "-"
CHUNK_RECORDS = 5000  # records per chunk handed to the store
READ_BYTES = 1 << 20
PARALLEL_MIN_BYTES = 4 << 20  # smaller files are read in this process: a child costs ~50 ms to start
_QUEUE_CHUNKS = 4  # chunks in flight between a reader process and the writer: bounds memory
# JSONL and CSV files are cut at line ends into blocks that READERS processes read in turn (block i by reader
# i % READERS) while the writer stores them in file order: on two cores the readers, not the writer, were
# the slower side. A CSV cut that falls inside a quoted cell is detected, and the file is then read again
# by one reader (see _SplitInsideRecord).
READERS = 2
BLOCK_BYTES = 1 << 20

Progress = Callable[[int], None]  # called with the bytes of the file read so far


@dataclass
class FileResult:
    """What importing one file did: the counts if it was stored, else every error found in it."""

    name: str
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    records: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Chunk:
    """Validated records of one stretch of a file, or the errors found there; and how far reading got."""

    rows: list[Sequence[Any]]  # in Contact field order
    errors: list[str]
    records: int
    bytes_read: int
    flat: list[Any] | None = None  # instead of rows: their values one after another (from the reader process)
    final: bool = False  # nothing after this chunk can be read reliably (a CSV structure error)


@dataclass
class _PackedChunk:
    """A chunk on its way from the reader process: the rows' values as one pickled flat list."""

    values: bytes
    errors: list[str]
    records: int
    bytes_read: int
    final: bool


def file_format(name: str) -> str:
    """``csv``, ``json`` or ``jsonl`` by the file's extension (``-`` is JSONL on stdin); else a clear error."""
    if name == STDIN:
        return "jsonl"
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        shown = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(f"{name}: unknown file type ({shown}); use .csv, .json, .jsonl or .ndjson, or - for stdin")
    return FORMATS[suffix]


def ingest_file(
    store: ContactStore,
    name: str,
    zone: tzinfo,
    *,
    stdin: IO[bytes] | None = None,
    progress: Progress | None = None,
    parallel: bool | None = None,
    readers: int = READERS,
    block_bytes: int = BLOCK_BYTES,
) -> FileResult:
    """Import one file (``-`` reads JSONL from ``stdin``) as one atomic batch.

    ``parallel`` forces (True) or forbids (False) reading in child processes (``readers`` of them, taking
    blocks of about ``block_bytes`` in turn); by default a regular file of at least PARALLEL_MIN_BYTES is
    read in parallel.
    """
    result = FileResult(name="<stdin>" if name == STDIN else name)
    opened: IO[bytes] | None = None
    try:
        kind = file_format(name)
        if name == STDIN:
            size = 0
            chunks = _read_chunks(stdin if stdin is not None else _stdin_bytes(), kind, result.name, zone)
        else:
            path = Path(name)
            if path.is_dir():
                raise ValueError(f"{name}: is a directory, not a file")
            opened = path.open("rb")
            size = os.fstat(opened.fileno()).st_size
            use_child = parallel if parallel is not None else size >= PARALLEL_MIN_BYTES and path.is_file()
            if use_child:
                opened.close()  # (opened first so that a missing or unreadable file is reported the same way)
                opened = None
                readers = readers if kind in ("jsonl", "csv") else 1
                chunks = _read_in_children(path, kind, result.name, zone, readers, block_bytes)
            else:
                chunks = _read_chunks(opened, kind, result.name, zone)
    except OSError as problem:
        result.errors.append(f"{name}: cannot read: {problem.strerror or problem}")
        return result
    except ValueError as problem:
        result.errors.append(str(problem))
        return result
    try:
        _store_chunks(store, chunks, result, size, progress)
    except _SplitInsideRecord:  # rolled back; a quoted cell spans a cut: read the file in one piece
        return ingest_file(store, name, zone, progress=progress, parallel=True, readers=1)
    except OSError as problem:
        result.errors.append(f"{result.name}: cannot read: {problem.strerror or problem}")
    finally:
        if opened is not None:
            opened.close()
    return result


class _Invalid(Exception):
    """Raised inside the store's transaction to roll it back when the file has an invalid record."""


def _store_chunks(
    store: ContactStore, chunks: Iterator[_Chunk], result: FileResult, size: int, progress: Progress | None
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
                if progress is not None:
                    progress(chunk.bytes_read)
                if chunk.errors:
                    result.errors.extend(chunk.errors)
                    raise _Invalid
                if chunk.flat is not None:
                    writer.add(PackedContacts(chunk.flat))
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


def _stdin_bytes() -> IO[bytes]:
    return sys.stdin.buffer


# --- reading in child processes ---------------------------------------------------------------------


class _SplitInsideRecord(Exception):
    """A block of a CSV file ended inside a quoted cell: the cut was not between records."""


_BLOCK_DONE = "block done"


def _read_in_children(
    path: Path, kind: str, name: str, zone: tzinfo, readers: int, block_bytes: int
) -> Iterator[_Chunk]:
    """The chunks of ``path`` in file order, read and validated by ``readers`` child processes while the
    caller writes. With one reader it reads the file whole; with more, each reads every ``readers``-th block
    (``_line_blocks``) and says when it is done with one, so the blocks are handed on in order."""
    context = multiprocessing.get_context("fork")
    zone_arg = getattr(zone, "key", None) or zone
    channels: list[multiprocessing.Queue[Any]] = []
    children = []
    for index in range(readers):
        channel: multiprocessing.Queue[Any] = context.Queue(maxsize=_QUEUE_CHUNKS)
        child = context.Process(
            target=_child_main,
            args=(str(path), kind, name, zone_arg, channel, index, readers, block_bytes),
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
            if isinstance(item, _SplitInsideRecord):
                raise item
            chunk = _Chunk([], item.errors, item.records, item.bytes_read, flat=pickle.loads(item.values))
            yield chunk
            if item.final:
                break
    finally:
        for child, channel in zip(children, channels, strict=True):
            if child.is_alive():
                child.terminate()
            child.join()
            channel.close()


def _child_main(
    path: str,
    kind: str,
    name: str,
    zone: object,
    channel: multiprocessing.Queue[Any],
    index: int = 0,
    readers: int = 1,
    block_bytes: int = BLOCK_BYTES,
) -> None:
    gc.disable()  # the chunks are acyclic; collection passes over millions of young objects cost ~15%
    try:
        real_zone = load_zone(zone) if isinstance(zone, str) else cast(tzinfo, zone)
        shared: dict[Any, Any] = {}
        with open(path, "rb") as stream:
            for chunks in _my_blocks(stream, kind, name, real_zone, index, readers, block_bytes):
                for chunk in chunks:
                    values = pickle.dumps(_flat_values(chunk.rows, shared), 5)
                    channel.put(_PackedChunk(values, chunk.errors, chunk.records, chunk.bytes_read, chunk.final))
                if readers > 1:
                    channel.put(_BLOCK_DONE)
        channel.put(None)
    except _SplitInsideRecord as split:
        channel.put(split)
    except OSError as problem:
        channel.put(("oserror", problem.strerror or str(problem)))
    except BaseException as problem:  # reported to the parent as a failure, never silently lost
        channel.put(("failure", f"{type(problem).__name__}: {problem}"))
    finally:
        channel.close()
        channel.join_thread()


def _my_blocks(
    stream: IO[bytes], kind: str, name: str, zone: tzinfo, index: int, readers: int, block_bytes: int
) -> Iterator[Iterator[_Chunk]]:
    """The chunks of each block reader ``index`` of ``readers`` reads (the whole file when it is the only one)."""
    if readers == 1:
        yield _read_chunks(stream, kind, name, zone)
        return
    columns: list[str] | None = None
    for number, (offset, first_line, data, last) in enumerate(_line_blocks(stream, block_bytes)):
        if kind == "csv" and number == 0:
            columns = _csv_columns(data)
        if number % readers != index:
            continue
        counter = _CountingReader(io.BytesIO(data), offset)
        if kind == "jsonl":
            yield _jsonl_chunks(counter, name, zone, first_line=first_line)
        elif number == 0:  # the header, then records
            yield _csv_chunks(counter, name, zone, block_end=not last)
        elif columns is not None:  # (else block 0 reports what is wrong with the header)
            yield _csv_chunks(counter, name, zone, columns=columns, first_line=first_line, block_end=not last)
        else:
            yield iter(())


def _line_blocks(stream: IO[bytes], block_bytes: int) -> Iterator[tuple[int, int, bytes, bool]]:
    """The file in blocks of whole lines of about ``block_bytes``: (offset, number of the first line, the
    bytes, is it the last block). Every reader cuts the file the same way, as each reads all of it."""
    offset, line, carry = 0, 1, b""
    pending = (0, 1, b"")  # (an empty file is one empty block)
    while True:
        data = stream.read(block_bytes)
        if data:
            data = carry + data
            cut = data.rfind(b"\n") + 1
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
        line += block.count(b"\n")


# Columns with few distinct values (source, agent, team, queue, reason, channel, direction): one shared
# object per value lets pickle send each value once per chunk, and the writer unpack it once. Unpacking
# a chunk this way took a quarter of the time of a JSON array of rows (the writer is the busier side).
_REPEATED_COLUMNS = tuple(
    Contact._fields.index(name) for name in ("source", "agent", "team", "queue", "reason", "channel", "direction")
)
_SHARED_VALUES_MAX = 100_000


def _flat_values(rows: list[Sequence[Any]], shared: dict[Any, Any]) -> list[Any]:
    """The rows' values one after another, repeated values replaced by one shared object each."""
    values = list(chain.from_iterable(rows))
    if len(shared) > _SHARED_VALUES_MAX:  # e.g. a free-text reason: keep memory bounded
        shared.clear()
    share = shared.setdefault
    width = len(Contact._fields)
    for column in _REPEATED_COLUMNS:
        values[column::width] = [share(value, value) for value in values[column::width]]
    return values


# --- the readers --------------------------------------------------------------------------------------


def _read_chunks(stream: IO[bytes], kind: str, name: str, zone: tzinfo) -> Iterator[_Chunk]:
    """Validated chunks of the file; once a record is invalid, only errors are collected (nothing is stored)."""
    counter = _CountingReader(stream)
    if kind == "jsonl":
        yield from _jsonl_chunks(counter, name, zone)
        return
    if kind == "csv":
        yield from _csv_chunks(counter, name, zone)
        return
    if kind != "json":
        raise ValueError(f"unknown file kind {kind!r}")
    rows: list[Sequence[Any]] = []
    errors: list[str] = []
    records = 0
    failed = False
    for line, obj, problem in _json_array_records(counter):
        records += 1
        if problem is not None:
            errors.append(f"{name}:{line}: {problem}")
            failed = True
        else:
            parsed = contact_row(obj, zone)
            if type(parsed) is list:
                errors.extend(f"{name}:{line}: {error}" for error in parsed)
                failed = True
            elif not failed:
                rows.append(parsed)
        if records >= CHUNK_RECORDS:
            yield _Chunk(rows, errors, records, counter.bytes_read)
            rows, errors, records = [], [], 0
    yield _Chunk(rows, errors, records, counter.bytes_read)


class _CountingReader(io.RawIOBase):
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


Item = tuple[int, Any, "str | None"]  # (line number, the record, or a problem with it)


def _jsonl_chunks(counter: _CountingReader, name: str, zone: tzinfo, first_line: int = 1) -> Iterator[_Chunk]:
    """``_read_chunks`` for JSONL: one JSON value per line, blank lines skipped, in one loop.

    Reads whole blocks and splits them. Written as a single loop rather than a record generator feeding the
    chunk loop: handing each record over cost a tenth of the reading. ``first_line``: the number of the
    stream's first line in the file.
    """
    loads, row_of, malformed = orjson.loads, contact_row, orjson.JSONDecodeError
    rows: list[Sequence[Any]] = []
    errors: list[str] = []
    records = 0
    line_number = first_line - 1
    failed = False
    rest = b""
    first = counter.bytes_read == 0  # at the start of the file
    while True:
        block = counter.read_block()
        if first:
            block = block.removeprefix(codecs.BOM_UTF8)  # some Windows tools start files with a BOM
            first = False
        if block:
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
        else:
            lines = [rest]  # the last line, when it has no line end
        for line in lines:
            line_number += 1
            try:
                obj = loads(line)
            except malformed as problem:
                if not line.strip():
                    continue  # a blank line (not valid JSON, so only checked here)
                records += 1
                errors.append(f"{name}:{line_number}: record: malformed JSON: {_json_problem(problem)}")
                failed = True
            else:
                records += 1
                row = row_of(obj, zone)
                if type(row) is list:
                    errors.extend(f"{name}:{line_number}: {error}" for error in row)
                    failed = True
                elif not failed:
                    rows.append(row)
            if records >= CHUNK_RECORDS:
                yield _Chunk(rows, errors, records, counter.bytes_read)
                rows, errors, records = [], [], 0
        if not block:
            break
    yield _Chunk(rows, errors, records, counter.bytes_read)


def _json_problem(problem: orjson.JSONDecodeError) -> str:
    return f"{problem.msg} (column {problem.colno})"


def _csv_chunks(
    counter: _CountingReader,
    name: str,
    zone: tzinfo,
    *,
    columns: list[str] | None = None,
    first_line: int = 1,
    block_end: bool = False,
) -> Iterator[_Chunk]:
    """``_read_chunks`` for CSV: a header row, then one record per row, in one loop (as ``_jsonl_chunks``).

    Quoted cells may span lines; a record's line is where it starts. For a block of the file after the
    first: ``columns`` are the header's, ``first_line`` the block's first line, and ``block_end`` says the
    file goes on after it, so a quoted cell still open at its end means the cut was inside a record.
    """
    reader = _csv_reader(counter)
    if columns is None:
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as problem:
            if block_end and _open_quote_at_end(problem):
                raise _SplitInsideRecord from None
            problem_text: str | None = f"header: {_csv_problem(problem)}"
        else:
            problem_text = _csv_header_problem(header)
        if problem_text is not None or header is None:
            yield _Chunk([], [f"{name}:1: {problem_text}"], 1, counter.bytes_read, final=True)
            return
        columns = [cell.strip() for cell in header]
    width = len(columns)
    base = first_line - 1  # reader.line_num counts the lines of this stream
    row_of = contact_row
    rows: list[Sequence[Any]] = []
    errors: list[str] = []
    records = 0
    failed = False
    line = base + reader.line_num + 1
    try:
        for row in reader:
            start, line = line, base + reader.line_num + 1
            if not row:
                continue  # a blank line
            records += 1
            if len(row) > width:
                errors.append(f"{name}:{start}: record: has {len(row)} cells but the header names {width} columns")
                failed = True
            else:
                cells = zip(columns, row, strict=False)
                # Empty cells are "not given": dropped here (in C) rather than by the validator.
                parsed = row_of(dict(compress(cells, row) if "" in row else cells), zone, from_text=True, filtered=True)
                if type(parsed) is list:
                    errors.extend(f"{name}:{start}: {error}" for error in parsed)
                    failed = True
                elif not failed:
                    rows.append(parsed)
            if records >= CHUNK_RECORDS:
                yield _Chunk(rows, errors, records, counter.bytes_read)
                rows, errors, records = [], [], 0
    except (csv.Error, UnicodeDecodeError) as problem:
        if block_end and _open_quote_at_end(problem):
            raise _SplitInsideRecord from None
        # The rest of the file cannot be split into records reliably.
        records += 1
        errors.append(f"{name}:{line}: record: {_csv_problem(problem)}")
        if records >= CHUNK_RECORDS:
            yield _Chunk(rows, errors, records, counter.bytes_read)
            rows, errors, records = [], [], 0
        yield _Chunk(rows, errors, records, counter.bytes_read, final=True)
        return
    yield _Chunk(rows, errors, records, counter.bytes_read)


def _open_quote_at_end(problem: Exception) -> bool:
    """The csv module's complaint (strict mode) about data that ends inside a quoted cell."""
    return isinstance(problem, csv.Error) and str(problem) == "unexpected end of data"


def _csv_reader(counter: _CountingReader) -> Any:
    """CSV rows of the stream (a BOM is dropped only at the start of the file)."""
    encoding = "utf-8-sig" if counter.bytes_read == 0 else "utf-8"
    text = io.TextIOWrapper(io.BufferedReader(counter, READ_BYTES), encoding=encoding, newline="")
    return csv.reader(text, strict=True)


def _csv_columns(first_block: bytes) -> list[str] | None:
    """The header's column names, as ``_csv_chunks`` reads them; None if the header is not sound (the reader of
    the first block reports it)."""
    try:
        header = next(_csv_reader(_CountingReader(io.BytesIO(first_block))), None)
    except (csv.Error, UnicodeDecodeError):
        return None
    if header is None or _csv_header_problem(header) is not None:
        return None
    return [cell.strip() for cell in header]


def _csv_header_problem(header: list[str] | None) -> str | None:
    if not header or not any(cell.strip() for cell in header):
        return "header: the file has no header row (the first line must name the columns)"
    columns = [cell.strip() for cell in header]
    duplicates = sorted({c for c in columns if columns.count(c) > 1 and c})
    if duplicates:
        return f"header: duplicate column {', '.join(repr(d) for d in duplicates)}"
    if "" in columns:
        return f"header: column {columns.index('') + 1} has no name"
    return None


def _csv_problem(problem: Exception) -> str:
    if isinstance(problem, UnicodeDecodeError):
        return "is not UTF-8 text"
    return f"malformed CSV ({problem})"


def _json_array_records(stream: _CountingReader) -> Iterator[Item]:
    """The elements of a top-level JSON array, each with the line where it starts; see ``_ArrayReader``."""
    reader = _ArrayReader(stream)
    try:
        if not reader.skip_space():
            yield 1, None, "record: the file is empty; expected a JSON array of records"
            return
        if reader.peek() != "[":
            yield reader.line, None, "record: expected a JSON array of records: [ {...}, {...} ]"
            return
        reader.pos += 1
        first = True
        while True:
            if not reader.skip_space():
                raise _ArrayError("the array is not closed (missing ])")
            if reader.peek() == "]":
                reader.pos += 1
                break
            if not first:
                if reader.peek() != ",":
                    raise _ArrayError(f"expected , or ] after the previous element, found {reader.peek()!r}")
                reader.pos += 1
                if not reader.skip_space():
                    raise _ArrayError("the array is not closed (missing ])")
            first = False
            start_line = reader.line
            value = reader.value()
            if reader.decoded_slowly and not _encodable(value):
                yield start_line, None, "record: has a \\u escape of a lone surrogate, which is not valid text"
                continue
            yield start_line, value, None
        if reader.skip_space():
            raise _ArrayError(f"unexpected {reader.peek()!r} after the end of the array")
    except _ArrayError as problem:
        yield reader.line, None, f"record: malformed JSON: {problem}"


def _encodable(value: Any) -> bool:
    """Whether orjson can store it (the standard library decodes lone surrogates that orjson refuses)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


class _ArrayError(Exception):
    """The JSON array's syntax is broken at the reader's current line."""


class _ArrayReader:
    """A sliding window of decoded text over a JSON array file, with the line number at ``pos``.

    An element's end is found cheaply: an object usually ends at the first ``}`` that makes the slice valid
    JSON (checked with orjson, fast). When that fails (nested objects, braces in strings) the standard
    library's decoder finds the end. A syntax error stops the file: after it, element boundaries cannot
    be trusted, so no further errors would be real.
    """

    MAX_ELEMENT_CHARS = 64 << 20
    _FAST_TRIES = 4

    def __init__(self, stream: _CountingReader):
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._scanner = json.JSONDecoder()
        self.buffer = ""
        self.pos = 0
        self.line = 1
        self._at_end = False
        self.decoded_slowly = False

    def _fill(self) -> bool:
        """Append the next block of text; False when the input is exhausted."""
        if self._at_end:
            return False
        block = self._stream.read_block()
        try:
            text = self._decoder.decode(block, final=not block)
        except UnicodeDecodeError:
            raise _ArrayError("the file is not UTF-8 text") from None
        self._at_end = not block
        self.buffer = self.buffer[self.pos :] + text
        self.pos = 0
        return bool(block) or bool(text)

    def peek(self) -> str:
        return self.buffer[self.pos]

    def skip_space(self) -> bool:
        """Move past whitespace; False at the end of the input."""
        while True:
            buffer, pos, size = self.buffer, self.pos, len(self.buffer)
            while pos < size and buffer[pos] in " \t\r\n":
                if buffer[pos] == "\n":
                    self.line += 1
                pos += 1
            self.pos = pos
            if pos < size:
                return True
            if not self._fill():
                return False

    def value(self) -> Any:
        """Decode the element at ``pos`` and move past it."""
        self.decoded_slowly = False
        while True:
            buffer, start = self.buffer, self.pos
            if buffer[start] == "{":
                end = buffer.find("}", start)
                for _ in range(self._FAST_TRIES):
                    if end < 0:
                        break
                    try:
                        value = orjson.loads(buffer[start : end + 1])
                    except orjson.JSONDecodeError:
                        end = buffer.find("}", end + 1)
                        continue
                    return self._advance(value, end + 1)
            self.decoded_slowly = True
            try:
                value, end = self._scanner.raw_decode(buffer, start)
            except json.JSONDecodeError as problem:
                if len(buffer) - start < self.MAX_ELEMENT_CHARS and self._fill():
                    continue  # the element may just be cut off at the end of the window
                self.line += buffer.count("\n", start, problem.pos)
                raise _ArrayError(problem.msg) from None
            if end == len(buffer) and not self._at_end and self._fill():
                continue  # a number at the window's edge may continue in the next block
            return self._advance(value, end)

    def _advance(self, value: Any, end: int) -> Any:
        self.line += self.buffer.count("\n", self.pos, end)
        self.pos = end
        return value

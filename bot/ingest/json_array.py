"""JSON files: one array of records (or one object), streamed, each record with the line where it starts."""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import tzinfo
from typing import Any

import orjson

from bot.ingest import chunks
from bot.ingest.chunks import Chunk, CountingReader, Item
from metrics.records import FieldError, contact_row


def json_array_chunks(counter: CountingReader, name: str, zone: tzinfo) -> Iterator[Chunk]:
    """``formats.read_chunks`` for a JSON array: its elements validated, in chunks."""
    limit = chunks.CHUNK_RECORDS
    taken = _Taken(name)
    for line, obj, problem in json_array_records(counter):
        taken.add(line, problem if problem is not None else contact_row(obj, zone))
        if taken.records >= limit:
            yield taken.chunk(counter.bytes_read)
    yield taken.chunk(counter.bytes_read)


class _Taken:
    """The records read since the last chunk. (The JSONL and CSV readers do the same inline: in their loops,
    one call per record would cost a tenth of the reading; a JSON array is read more slowly anyway.)"""

    def __init__(self, name: str):
        self.name = name
        self.rows: list[Sequence[Any]] = []
        self.errors: list[str] = []
        self.records = 0
        self.failed = False  # once a record is invalid only errors are kept: nothing of the file is stored

    def add(self, line: int, parsed: tuple[Any, ...] | list[FieldError] | str) -> None:
        """A record starting at ``line``: its row, its field errors, or what is wrong with its JSON."""
        self.records += 1
        if isinstance(parsed, str):
            self.errors.append(f"{self.name}:{line}: {parsed}")
            self.failed = True
        elif type(parsed) is list:
            self.errors.extend(f"{self.name}:{line}: {error}" for error in parsed)
            self.failed = True
        elif not self.failed:
            self.rows.append(parsed)

    def chunk(self, bytes_read: int) -> Chunk:
        """What was taken, as a chunk; the next one starts empty."""
        done = Chunk(self.rows, self.errors, self.records, bytes_read)
        self.rows, self.errors, self.records = [], [], 0
        return done


def json_array_records(stream: CountingReader) -> Iterator[Item]:
    """The elements of a top-level JSON array, each with the line where it starts; see ``_ArrayReader``."""
    reader = _ArrayReader(stream)
    try:
        if not reader.skip_space():
            yield 1, None, "record: the file is empty; expected a JSON array of records"
            return
        if reader.peek() == "{":  # one object: one record (as the webhook takes it)
            start_line = reader.line
            value = reader.value()
            if reader.skip_space():
                raise _ArrayError(f"unexpected {reader.peek()!r} after the object (several records: [ {{...}}, ... ])")
            if reader.decoded_slowly and not _encodable(value):
                yield start_line, None, "record: has a \\u escape of a lone surrogate, which is not valid text"
                return
            yield start_line, value, None
            return
        if reader.peek() != "[":
            yield reader.line, None, "record: expected a JSON array of records [ {...}, {...} ], or one object {...}"
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

    def __init__(self, stream: CountingReader):
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
            except RecursionError:
                raise _ArrayError(f"nested too deeply (more than {sys.getrecursionlimit()} levels)") from None
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

"""Files of platform events (``acr-bot ingest --format amazon-connect``): JSON objects back to back, whitespace
between them optional (Firehose writes them to S3 so), or a gzip of that; each event mapped to a record."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import tzinfo
from functools import partial
from pathlib import Path
from typing import IO, Any, Protocol, cast

import orjson

from bot.ingest.chunks import CHUNK_RECORDS, Chunk, CountingReader, SplitInsideRecord
from bot.ingest.jsonl_format import json_problem
from metrics.records import Contact, contact_row
from metrics.timeutil import InstantCache, instant_cache


class EventMapper(Protocol):
    """A platform's events in a file: how one is decoded, and the contact record it means."""

    def loads(self, data: bytes) -> Any:
        """The JSON value of ``data``, a JSON object as the event type ``record`` takes; raises
        orjson.JSONDecodeError when ``data`` is not one JSON value."""
        ...

    def record(self, event: Any) -> dict[str, Any] | None:
        """The contact record of an event (None: not a contact)."""
        ...

    def row(self, event: Any, raw: str | bytes, instants: InstantCache) -> Sequence[Any] | None:
        """The fast path: ``contact_row`` of the event's record (raw ``raw``, the text or the store's packed form of
        it, put in the row as it is), made straight from the event, or
        None when it is not a contact; raises Unusual for anything but the usual event (then ``record`` and
        validation are asked, which say what is wrong)."""
        ...


class Unusual(Exception):
    """An event that a fast path does not vouch for: the general path (map, then validate) takes it."""


_NOT_OBJECTS = (list, str, int, float, bool, type(None))  # what a JSON value is when it is not an object
EVENTS = "events"  # the reader kind
GZIP_MAGIC = b"\x1f\x8b"
MAX_EVENT_BYTES = 16 << 20  # an event still not valid JSON at this size is broken, not cut in the middle
OBJECT_GAP = re.compile(rb"\}\s*\{")  # where one event may end and the next begin


def object_cut(data: bytes) -> int:
    """Where a block of events may end: between its last ``}`` and ``{`` (0: nowhere yet). A cut that falls
    inside a string is detected by the reader of the block (``SplitInsideRecord``)."""
    for window in (1 << 16, len(data)):
        gaps = list(OBJECT_GAP.finditer(data, max(0, len(data) - window)))
        if gaps:
            return gaps[-1].start() + 1
    return 0


def event_chunks(
    counter: CountingReader,
    name: str,
    zone: tzinfo,
    events: EventMapper,
    *,
    first_line: int | Callable[[], int] = 1,
    block_end: bool = False,
    raw_bytes: bool = False,
) -> Iterator[Chunk]:
    """Validated chunks of a file (or block) of events, each mapped to a record by ``events``.

    An object ends at a ``}`` followed by ``{``: the text up to there is decoded, and if it is not valid JSON
    the ``}{`` was inside a string, so the object goes on to the next one. Errors name the line where an event
    starts and its ContactId. ``first_line`` and ``block_end`` as for ``csv_format.csv_chunks`` (``first_line``
    may be a function, asked only for an error message). With ``raw_bytes`` each row's raw is the event's
    bytes (UTF-8), not its text: for the caller to put all of a chunk's in the form a store keeps them at once
    (``RawPacker.pack_all``), which costs half as much as one at a time.
    """
    rows: list[Sequence[Any]] = []
    errors: list[str] = []
    records = ignored = 0
    failed = False
    row_of, record_of, fast_row_of = contact_row, events.record, events.row
    instants = instant_cache(zone)
    first: Callable[[], int] = first_line if callable(first_line) else partial(int, first_line)

    def at(line: int) -> int:  # (``line`` is counted from the block's first line)
        return first() + line - 1

    for line, obj, data in _event_objects(_event_stream(counter), events.loads, 1, block_end):
        records += 1
        if obj is _BROKEN:  # ``data`` says why; nothing after this point of the file can be read reliably
            errors.append(f"{name}:{at(line)}: {data.decode()}")
            yield Chunk(rows, errors, records, counter.bytes_read, final=True, ignored=ignored)
            return
        if type(obj) in _NOT_OBJECTS:
            errors.append(f"{name}:{at(line)}: record: expected a JSON object, got {type(obj).__name__}")
            failed = True
        else:
            record = None
            raw = data if raw_bytes else data.decode()
            try:
                row = fast_row_of(obj, raw, instants)
            except Unusual:  # the general path: the record, validated (which names what is wrong)
                record = record_of(obj)
                row = (
                    None if record is None else row_of(record, zone, raw=data.decode() if raw_bytes else cast(str, raw))
                )
                if raw_bytes and type(row) is tuple:
                    row = (*row[:-1], raw)
            if row is None:
                ignored += 1
            elif type(row) is list:
                assert record is not None
                errors.extend(f"{name}:{at(line)}: {error} (ContactId {record.get('id')})" for error in row)
                failed = True
            elif not failed:
                rows.append(row)
        if records >= CHUNK_RECORDS:
            yield Chunk(rows, errors, records, counter.bytes_read, ignored=ignored)
            rows, errors, records, ignored = [], [], 0, 0
    yield Chunk(rows, errors, records, counter.bytes_read, ignored=ignored)


_BROKEN = object()  # in place of an event that cannot be read (its text is then the problem)
SAMPLE_BYTES = 2 << 20  # the head of a file that ``head_samples`` reads: ~800 Connect CTRs
_RAW, _CUSTOMER = Contact._fields.index("raw"), Contact._fields.index("customer_id")


def head_samples(path: Path, gzipped: bool, name: str, zone: tzinfo, events: EventMapper) -> list[tuple[str, str]]:
    """(raw, customer_id) of the valid events in the first SAMPLE_BYTES of the file (gunzipped): what a store
    learns its compression from before the readers start (``RawPacking``). Nothing when it cannot be read."""
    try:
        with path.open("rb") as stream:
            head = (gzip.GzipFile(fileobj=stream, mode="rb") if gzipped else stream).read(SAMPLE_BYTES)
    except (OSError, EOFError, zlib.error):  # (the import itself says what is wrong)
        return []
    if len(head) == SAMPLE_BYTES:
        head = head[: object_cut(head)]
    samples: list[tuple[str, str]] = []
    for chunk in event_chunks(CountingReader(io.BytesIO(head)), name, zone, events):
        samples += [(row[_RAW], row[_CUSTOMER]) for row in chunk.rows]
    return samples


def _event_stream(counter: CountingReader) -> CountingReader:
    """The events' bytes: ``counter`` itself within a file, and at its start the file gunzipped when it is gzip."""
    if counter.bytes_read != 0:
        return counter
    head = counter.read_block()
    if head.startswith(GZIP_MAGIC):
        return CountingReader(cast(IO[bytes], gzip.GzipFile(fileobj=_Replay(head, counter), mode="rb")))
    return CountingReader(cast(IO[bytes], _Replay(head, counter)))


def _event_objects(
    reader: CountingReader, loads: Callable[[bytes], Any], first_line: int, block_end: bool
) -> Iterator[tuple[int, Any, bytes]]:
    """(line, decoded value, its bytes: UTF-8) of each JSON value of the stream, written back to back; a last
    (line, _BROKEN, the problem's text as bytes) when the rest cannot be read. See ``_event_chunks``."""
    gap = OBJECT_GAP
    line = first_line  # the line of ``data[start]``
    data = b""
    while True:
        try:
            block = reader.read_block()
        except (OSError, EOFError, zlib.error) as problem:  # a broken gzip stream
            yield line, _BROKEN, f"record: cannot be read: {problem}".encode()
            return
        data = data + block if data else block
        start = len(data) - len(data.lstrip())
        line += newlines(data, 0, start)
        ends = [(m.start() + 1, m.end() - 1) for m in gap.finditer(data, start)]
        if not block:
            ends.append((len(data.rstrip()), len(data)))  # the end of the file ends the last object
        for number, (end, after) in enumerate(ends):
            if end <= start:
                continue
            piece = data[start:end]
            try:
                obj = loads(piece)
                if not piece.isascii():  # (the usual event is ASCII: JSON escapes what is not)
                    piece.decode()
            except ValueError:  # not JSON (or, which only a lenient ``loads`` lets through, not UTF-8)
                if (block or number < len(ends) - 1) and end - start < MAX_EVENT_BYTES:
                    continue  # a "}{" inside a string: the object goes on
                if block_end:
                    raise SplitInsideRecord from None
                yield line, _BROKEN, f"record: malformed JSON: {_json_problem(piece)}".encode()
                return
            yield line, obj, piece
            line += newlines(data, start, after)
            start = after
        if not block:
            return
        if len(data) - start > MAX_EVENT_BYTES:
            yield line, _BROKEN, f"record: malformed JSON: an event longer than {MAX_EVENT_BYTES} bytes".encode()
            return
        data = data[start:]


def newlines(data: bytes, start: int = 0, end: int | None = None) -> int:
    """The line ends in ``data[start:end]``. Files of events often have none (Firehose writes objects back to
    back), and find (memchr) says so in a fraction of the time count takes to scan the same bytes."""
    return 0 if data.find(b"\n", start, end) < 0 else data.count(b"\n", start, end)


def _json_problem(piece: bytes) -> str:
    """What is wrong with the JSON of ``piece``, as orjson says it."""
    try:
        orjson.loads(piece)
    except orjson.JSONDecodeError as problem:
        return json_problem(problem)
    return "not UTF-8 text"  # (orjson checks UTF-8, so it never gets here)


class _Replay(io.RawIOBase):
    """A stream that gives ``head`` again before the rest of ``counter`` (the bytes read to tell gzip apart)."""

    def __init__(self, head: bytes, counter: CountingReader):
        self._head = head
        self._counter = counter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        return self._counter.readinto(buffer)

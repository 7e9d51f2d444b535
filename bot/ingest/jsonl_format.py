"""JSONL (NDJSON) files: one JSON record per line, blank lines skipped."""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from datetime import tzinfo
from typing import Any

import orjson

from bot.ingest import chunks
from bot.ingest.chunks import Chunk, CountingReader
from metrics.records import contact_row


def jsonl_chunks(counter: CountingReader, name: str, zone: tzinfo, first_line: int = 1) -> Iterator[Chunk]:
    """``read_chunks`` for JSONL: one JSON value per line, blank lines skipped, in one loop.

    Reads whole blocks and splits them. Written as a single loop rather than a record generator feeding the
    chunk loop: handing each record over cost a tenth of the reading. ``first_line``: the number of the
    stream's first line in the file.
    """
    loads, row_of, malformed = orjson.loads, contact_row, orjson.JSONDecodeError
    chunk_records = chunks.CHUNK_RECORDS
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
                errors.append(f"{name}:{line_number}: record: malformed JSON: {json_problem(problem)}")
                failed = True
            else:
                records += 1
                row = row_of(obj, zone)
                if type(row) is list:
                    errors.extend(f"{name}:{line_number}: {error}" for error in row)
                    failed = True
                elif not failed:
                    rows.append(row)
            if records >= chunk_records:
                yield Chunk(rows, errors, records, counter.bytes_read)
                rows, errors, records = [], [], 0
        if not block:
            break
    yield Chunk(rows, errors, records, counter.bytes_read)


def json_problem(problem: orjson.JSONDecodeError) -> str:
    return f"{problem.msg} (column {problem.colno})"

"""CSV files: a header row naming the columns, then one record per row (quoted cells may span lines)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import tzinfo
from itertools import compress
from typing import Any

from bot.ingest import chunks
from bot.ingest.chunks import Chunk, CountingReader, SplitInsideRecord
from metrics.records import contact_row


def csv_chunks(
    counter: CountingReader,
    name: str,
    zone: tzinfo,
    *,
    columns: list[str] | None = None,
    first_line: int = 1,
    block_end: bool = False,
) -> Iterator[Chunk]:
    """``read_chunks`` for CSV: a header row, then one record per row, in one loop (as ``jsonl_chunks``).

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
                raise SplitInsideRecord from None
            problem_text: str | None = f"header: {csv_problem(problem)}"
        else:
            problem_text = csv_header_problem(header)
        if problem_text is not None or header is None:
            yield Chunk([], [f"{name}:1: {problem_text}"], 1, counter.bytes_read, final=True)
            return
        columns = [cell.strip() for cell in header]
    width = len(columns)
    base = first_line - 1  # reader.line_num counts the lines of this stream
    row_of = contact_row
    chunk_records = chunks.CHUNK_RECORDS
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
            if records >= chunk_records:
                yield Chunk(rows, errors, records, counter.bytes_read)
                rows, errors, records = [], [], 0
    except (csv.Error, UnicodeDecodeError) as problem:
        if block_end and _open_quote_at_end(problem):
            raise SplitInsideRecord from None
        # The rest of the file cannot be split into records reliably.
        records += 1
        errors.append(f"{name}:{line}: record: {csv_problem(problem)}")
        if records >= chunk_records:
            yield Chunk(rows, errors, records, counter.bytes_read)
            rows, errors, records = [], [], 0
        yield Chunk(rows, errors, records, counter.bytes_read, final=True)
        return
    yield Chunk(rows, errors, records, counter.bytes_read)


def _open_quote_at_end(problem: Exception) -> bool:
    """The csv module's complaint (strict mode) about data that ends inside a quoted cell."""
    return isinstance(problem, csv.Error) and str(problem) == "unexpected end of data"


def _csv_reader(counter: CountingReader) -> Any:
    """CSV rows of the stream (a BOM is dropped only at the start of the file)."""
    encoding = "utf-8-sig" if counter.bytes_read == 0 else "utf-8"
    text = io.TextIOWrapper(io.BufferedReader(counter, chunks.READ_BYTES), encoding=encoding, newline="")
    return csv.reader(text, strict=True)


def csv_columns(first_block: bytes) -> list[str] | None:
    """The header's column names, as ``csv_chunks`` reads them; None if the header is not sound (the reader of
    the first block reports it)."""
    try:
        header = next(_csv_reader(CountingReader(io.BytesIO(first_block))), None)
    except (csv.Error, UnicodeDecodeError):
        return None
    if header is None or csv_header_problem(header) is not None:
        return None
    return [cell.strip() for cell in header]


def csv_header_problem(header: list[str] | None) -> str | None:
    if not header or not any(cell.strip() for cell in header):
        return "header: the file has no header row (the first line must name the columns)"
    columns = [cell.strip() for cell in header]
    duplicates = sorted({c for c in columns if columns.count(c) > 1 and c})
    if duplicates:
        return f"header: duplicate column {', '.join(repr(d) for d in duplicates)}"
    if "" in columns:
        return f"header: column {columns.index('') + 1} has no name"
    return None


def csv_problem(problem: Exception) -> str:
    if isinstance(problem, UnicodeDecodeError):
        return "is not UTF-8 text"
    return f"malformed CSV ({problem})"

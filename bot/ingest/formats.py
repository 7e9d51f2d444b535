"""Which reader a file needs, by its extension, and the chunks of a file read in this process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path
from typing import IO

from bot.ingest import csv_format, jsonl_format
from bot.ingest.chunks import Chunk, CountingReader
from bot.ingest.events_format import EVENTS, EventMapper, event_chunks
from bot.ingest.json_array import json_array_chunks

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
STDIN = "-"


def file_format(name: str) -> str:
    """``csv``, ``json`` or ``jsonl`` by the file's extension (``-`` is JSONL on stdin); else a clear error."""
    if name == STDIN:
        return "jsonl"
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        shown = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(f"{name}: unknown file type ({shown}); use .csv, .json, .jsonl or .ndjson, or - for stdin")
    return FORMATS[suffix]


def read_chunks(
    stream: IO[bytes],
    kind: str,
    name: str,
    zone: tzinfo,
    events: EventMapper | None = None,
    raw_bytes: bool = False,
) -> Iterator[Chunk]:
    """Validated chunks of the file; once a record is invalid, only errors are collected (nothing is stored).
    ``events`` maps each event of a file of platform events (kind EVENTS) to a record; ``raw_bytes`` as for
    ``event_chunks``."""
    counter = CountingReader(stream)
    if kind == EVENTS:
        assert events is not None
        yield from event_chunks(counter, name, zone, events, raw_bytes=raw_bytes)
        return
    if kind == "jsonl":
        yield from jsonl_format.jsonl_chunks(counter, name, zone)
        return
    if kind == "csv":
        yield from csv_format.csv_chunks(counter, name, zone)
        return
    if kind != "json":
        raise ValueError(f"unknown file kind {kind!r}")
    yield from json_array_chunks(counter, name, zone)

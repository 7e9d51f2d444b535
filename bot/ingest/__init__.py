"""Bulk import of contact files: CSV, JSON arrays, JSONL/NDJSON and JSONL on stdin (no click here).

Each file is one batch: it is validated whole and stored in one transaction, or (if any record is invalid)
not at all, with every problem listed as ``file:line: field: message``. Files are independent of each other.

Reading streams, so memory stays flat whatever the file size. A file big enough to be worth it is read and
validated by child processes while this process writes what they have read.

The modules, one job each:
  formats       which reader a file needs (by extension), and reading in this process
  jsonl_format  JSONL / NDJSON records
  csv_format    CSV records (a header, then rows)
  json_array    a JSON array of records, streamed
  events_format a platform's events (Amazon Connect CTRs as Firehose writes them), each mapped to a record
  chunks        what readers hand the writer: validated chunks, and a stream that counts its bytes
  children      reading in child processes, blocks stored in file order
  batch         one file as one atomic batch into the store (``ingest_file``)
"""

from __future__ import annotations

from bot.ingest.batch import FileResult, ingest_file
from bot.ingest.events_format import EventMapper
from bot.ingest.formats import FORMATS, STDIN, file_format

__all__ = ["FORMATS", "STDIN", "EventMapper", "FileResult", "file_format", "ingest_file"]

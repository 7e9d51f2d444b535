"""Reading a file in blocks by several reader processes stores and reports exactly what one reader does.

The cut points are forced small (tens of bytes) so that they land everywhere: between records, inside quoted
multi-line CSV cells or a string that looks like the gap between two events (the import must notice and read the
file in one piece), next to blank lines, a BOM, CRLF line ends and a last line without a line end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bot.storage.sqlite as sqlite_store
from bot.ingest import FileResult, batch, children, ingest_file, jsonl_format
from bot.platforms.amazon_connect import CtrMapper
from bot.settings import Settings
from bot.storage import ContactStore, open_store
from bot.storage.sqlite import SQLiteBulkWriter
from metrics.timeutil import load_zone
from tests.store_support import sqlite_url
from tests.test_postgres_store import dump

pytestmark = pytest.mark.slow  # reader processes, and files cut at every point

ZONE = load_zone("Europe/Berlin")
HEADER = "id,customer_id,agent,started_at,ended_at,reason,tier"


def outcome(path: Path, new_store: Callable[[], ContactStore], **how: Any) -> tuple[Any, ...]:
    """What importing ``path`` into a new store reports and stores, read ``how`` (parallel=, readers=,
    block_bytes=).

    The stored contacts are compared without their surrogate key ``pk`` (as ``dump`` does): on PostgreSQL its values
    depend on how the file was cut, as each chunk's new keys are inserted in key order, and a cut inside a quoted
    cell rolls the import back and reads it again, while a sequence never gives back the values a rolled-back
    transaction drew ("sequence operations are never rolled back", PostgreSQL docs, Sequence Manipulation
    Functions). No metric depends on it; every field and every derived value must be exactly what one reader
    stores."""
    store = new_store()
    try:
        result: FileResult = ingest_file(store, str(path), ZONE, **how)
        rows = dump(store)
        return result.counts.as_dict(), result.records, result.errors, rows
    finally:
        store.close()


def assert_blocks_read_like_one_reader(path: Path, new_store: Callable[[], ContactStore], block_bytes: int) -> None:
    alone = outcome(path, new_store, parallel=False)
    for readers in (2, 3):
        assert outcome(path, new_store, parallel=True, readers=readers, block_bytes=block_bytes) == alone


def ctr(n: int, **fields: Any) -> str:
    """A small Amazon Connect CTR (the fields the mapping reads; a note whose text looks like a cut between two)."""
    item = {
        "ContactId": f"c{n}",
        "Agent": {"Username": "ana"},
        "CustomerEndpoint": {"Address": f"+1555000{n % 3}"},
        "InitiationTimestamp": f"2026-03-29T0{n % 4}:30:00Z",
        "Attributes": {"note": "typed } { and }{ here, grüße"},
    }
    return orjson.dumps({**item, **fields}).decode()


EVENTS = st.one_of(
    st.integers(0, 40).map(ctr),
    st.integers(0, 40).map(lambda n: ctr(n, InitiationTimestamp=None)),  # invalid: listed with its line
    st.integers(0, 40).map(lambda n: ctr(n, CustomerEndpoint=None)),  # no customer: ignored
    st.just("[1]"),  # not an object
    st.just('{"ContactId": "broken", '),  # the rest cannot be read
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(EVENTS, max_size=12),
    gaps=st.lists(st.sampled_from(["", "", "\n", " \n\n ", "\r\n"]), min_size=12, max_size=12),
    block_bytes=st.integers(1, 300),
)
def test_any_cut_of_a_file_of_events_reads_like_one_reader(
    tmp_path_factory: pytest.TempPathFactory,
    new_store: Callable[[], ContactStore],
    events: list[str],
    gaps: list[str],
    block_bytes: int,
) -> None:
    """Files of events are cut after every ``block_bytes`` where one event may end (each reader reads only its
    blocks), and line numbers are counted only for errors: the same stores, counts and errors as one reader."""
    path = tmp_path_factory.mktemp("events") / "objects"
    path.write_text("".join(event + gap for event, gap in zip(events, gaps, strict=False)))
    how = {"events": CtrMapper(Settings())}
    alone = outcome(path, new_store, parallel=False, **how)
    for readers in (2, 3):
        assert outcome(path, new_store, parallel=True, readers=readers, block_bytes=block_bytes, **how) == alone


def bytes_read_by(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the reads the (in-process) reader makes at offsets (``os.pread``), as they happen."""
    sizes: list[int] = []
    real = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        data = real(fd, size, offset)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", pread)
    return sizes


def reader_errors(path: Path, index: int, readers: int, block_bytes: int) -> list[str]:
    """What reader ``index`` of ``readers`` finds in its blocks of a file of events (run in this process)."""
    with open(path, "rb") as stream:
        blocks = children._my_blocks(
            stream, "events", path.name, load_zone("UTC"), index, readers, block_bytes, CtrMapper(Settings())
        )
        return [str(error) for chunks in blocks for chunk in chunks for error in chunk.errors]


def test_a_file_of_events_with_an_error_in_every_block_counts_its_lines_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Line numbers are counted on from the reader's previous block, not from the start of the file for each
    block with an error: a file wrong everywhere (a settings mistake) cost ~n^2 / 2 blocks' reading."""
    path = tmp_path / "objects"
    path.write_text("\n".join(ctr(n, InitiationTimestamp=None, Attributes={}) for n in range(400)) + "\n")
    alone = reader_errors(path, 0, 1, 1 << 20)
    counted: list[int] = []
    real = children.newlines

    def newlines(data: bytes) -> int:
        counted.append(len(data))
        return real(data)

    monkeypatch.setattr(children, "newlines", newlines)
    both = reader_errors(path, 0, 2, 2_000) + reader_errors(path, 1, 2, 2_000)
    assert sorted(both) == sorted(alone) and len(alone) == 400  # the same errors, on the same lines
    assert sum(counted) < 2 * path.stat().st_size  # each reader up to its last block (from the start: ~14 times)


def test_a_file_of_events_with_nowhere_to_cut_is_not_read_whole_by_each_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader looks for the next cut at most MAX_EVENT_BYTES on (no event is longer); beyond that the rest of
    the file is one block, read as a stream. A JSON array given as events was read whole, by every reader."""
    monkeypatch.setattr(children, "MAX_EVENT_BYTES", 1 << 18, raising=False)
    path = tmp_path / "array"
    path.write_text("[" + ",".join([ctr(n, Attributes={}) for n in range(16_000)]) + "]")
    assert path.stat().st_size > 2 << 20
    sizes = bytes_read_by(monkeypatch)
    errors = reader_errors(path, 0, 2, 1 << 16) + reader_errors(path, 1, 2, 1 << 16)
    assert errors == ["array:1: record: expected a JSON object, got list"]  # (the rest: one block, one reader)
    assert max(sizes) <= 1 << 20  # the stream's reads (looking for a cut, each reader read the whole file)


def csv_line(n: int, reason: str = "billing", tier: str = "1") -> str:
    return f"r{n},k{n % 3},ana,2026-03-29 0{n % 4}:30:00,,{reason},{tier}"


def jsonl_line(n: int, **fields: Any) -> str:
    record = {"id": f"r{n}", "customer_id": f"k{n % 3}", "agent": "ana", "started_at": f"2026-03-29T0{n % 4}:30:00"}
    return orjson.dumps({**record, **fields}).decode()


CSV_LINES = st.one_of(
    st.integers(0, 40).map(csv_line),
    st.integers(0, 40).map(lambda n: csv_line(n, reason='"two\nlines, quoted"')),  # a record over two lines
    st.integers(0, 40).map(lambda n: csv_line(n, reason='"say ""hi""\n\nthen go"')),
    st.integers(0, 40).map(lambda n: csv_line(n, tier="x")),  # invalid: listed with its line
    st.just(""),  # a blank line
    st.just('r9,k1,ana,"2026-03-29 01:00:00,,x,1'),  # a quote never closed: the rest cannot be read
    st.just('r8,k1,ana,"2026-03-29 01:00:00"x,,y,1'),  # text after a closing quote: nor here
)
JSONL_LINES = st.one_of(
    st.integers(0, 40).map(jsonl_line),
    st.integers(0, 40).map(lambda n: jsonl_line(n, reason="a\nb")),  # an escaped line end stays inside
    st.integers(0, 40).map(lambda n: jsonl_line(n, tier=0)),
    st.just(""),
    st.just("   "),
    st.just('{"id": "broken"'),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["csv", "jsonl"]),
    data=st.data(),
    block_bytes=st.integers(1, 120),
    bom=st.booleans(),
    line_end=st.sampled_from(["\n", "\r\n"]),
    final_line_end=st.booleans(),
)
def test_any_cut_reads_like_one_reader(
    tmp_path_factory: pytest.TempPathFactory,
    new_store: Callable[[], ContactStore],
    kind: str,
    data: st.DataObject,
    block_bytes: int,
    bom: bool,
    line_end: str,
    final_line_end: bool,
) -> None:
    lines = data.draw(st.lists(CSV_LINES if kind == "csv" else JSONL_LINES, max_size=12))
    if kind == "csv":
        lines = [HEADER, *lines]
    text = line_end.join(lines) + (line_end if final_line_end and lines else "")
    folder = tmp_path_factory.mktemp("blocks")
    path = folder / f"contacts.{kind}"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    assert_blocks_read_like_one_reader(path, new_store, block_bytes)


@pytest.mark.parametrize(
    "text",
    [
        "",
        HEADER,
        "id,id\nr1,r2\n",  # a header problem: one error, nothing else read
        "\n".join([HEADER, *(csv_line(n) for n in range(30))]),
        "\n".join([HEADER, *(csv_line(n, reason='"a\nb\nc"') for n in range(30))]),
        # malformed CSV stops the reading where it is, whatever the later blocks hold
        "\n".join([HEADER, csv_line(1), 'r8,k1,ana,"2026-03-29 01:00:00"x,,y,1', csv_line(3, tier="x"), csv_line(5)]),
    ],
)
def test_csv_files_read_like_one_reader(tmp_path: Path, new_store: Callable[[], ContactStore], text: str) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(text)
    for block_bytes in (1, 7, 50, 1 << 20):
        assert_blocks_read_like_one_reader(path, new_store, block_bytes)


def test_a_cut_inside_a_quoted_cell_reads_the_file_again_in_one_piece(
    tmp_path: Path, store: ContactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("\n".join([HEADER, csv_line(1), csv_line(5, reason='"line one\nline two"'), csv_line(3)]) + "\n")
    asked: list[int] = []
    real = children.read_in_children

    def spy(*args: Any) -> Any:
        asked.append(args[4])  # readers
        return real(*args)

    monkeypatch.setattr(children, "read_in_children", spy)
    cut_inside = path.read_text().index("line one\n") + len("line one\n") + 2  # the first cut: after it
    result = ingest_file(store, str(path), ZONE, parallel=True, readers=2, block_bytes=cut_inside)
    assert result.ok and result.counts.inserted == 3
    assert store.get_contact("api", "r5")["reason"] == "line one\nline two"  # type: ignore[index]
    assert asked == [2, 1]  # cut in two, noticed, read again by one reader


def test_a_reader_that_dies_fails_the_import_and_stores_nothing(
    tmp_path: Path, store: ContactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader process killed mid-file (here: exits on its second block) is noticed when its turn comes."""
    path = tmp_path / "contacts.jsonl"
    path.write_text("".join(jsonl_line(n % 2) + "\n" for n in range(40)))  # hours 00 and 01: no DST gap
    real = jsonl_format.jsonl_chunks

    def dies_on_the_second_block(counter: Any, *args: Any, **kwargs: Any) -> Any:
        if counter.bytes_read > 0 and kwargs.get("first_line", 1) > 1 and os.getpid() != parent:
            os._exit(3)
        return real(counter, *args, **kwargs)

    parent = os.getpid()
    monkeypatch.setattr(jsonl_format, "jsonl_chunks", dies_on_the_second_block)
    with pytest.raises(RuntimeError, match="the reader process stopped unexpectedly"):
        ingest_file(store, str(path), ZONE, parallel=True, readers=2, block_bytes=200)
    assert store.count_contacts() == 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_import_ends_its_reader_processes(tmp_path: Path, sig: signal.Signals) -> None:
    """Defect 9: after `kill` of `acr-bot ingest` its readers (about 80 MB each) went on running, blocked."""
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(jsonl_line(n, reason="r" * 100).encode() for n in range(120_000)))
    assert path.stat().st_size > 2 * batch.PARALLEL_MIN_BYTES
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'acr.db'}"}
    acr_bot = Path(sys.executable).with_name("acr-bot")
    proc = subprocess.Popen([str(acr_bot), "ingest", str(path)], env=env, stdout=subprocess.DEVNULL)
    readers: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while len(readers := parent.children()) < children.READERS:
            assert proc.poll() is None and time.monotonic() < deadline, "the import ended before its readers started"
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.wait(10)
        _, alive = psutil.wait_procs(readers, timeout=3)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], "reader processes outlived the import"
    finally:
        for reader in readers:  # (left running only when the test fails)
            with contextlib.suppress(psutil.NoSuchProcess):
                reader.kill()
        proc.kill()
        proc.wait()


def test_ctrs_resent_in_later_blocks_settle_in_an_initial_load_as_row_by_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Amazon Connect re-sends a CTR when it changes: in a file, later versions may come in any reader's block. An
    initial load into an empty SQLite store adds every row without the key index and settles repeated keys at the
    end (``SQLiteBulkWriter``): the same counts and stored versions as one reader writing row by row."""

    def stamp(minute: int) -> str:
        return f"2026-03-29T05:{minute:02d}:00Z"

    events = [ctr(n, LastUpdateTimestamp=stamp(10)) for n in range(30)]
    events += [
        ctr(3, LastUpdateTimestamp=stamp(20), Agent={"Username": "bo"}),  # newer: updated
        ctr(4, LastUpdateTimestamp=stamp(10)),  # the same: unchanged
        ctr(5, LastUpdateTimestamp=stamp(5), Agent={"Username": "bo"}),  # older: stale
        ctr(3, LastUpdateTimestamp=stamp(15), Agent={"Username": "cy"}),  # older than the update: stale
        ctr(6, LastUpdateTimestamp=stamp(30), Queue={"Name": "tech"}),  # newer: updated
    ]
    path = tmp_path / "ctrs"
    path.write_text("".join(events))
    how: dict[str, Any] = {"events": CtrMapper(Settings())}

    def imported(name: str, **read: Any) -> tuple[Any, ...]:
        store = open_store(sqlite_url(tmp_path / f"{name}.db"))
        try:
            result = ingest_file(store, str(path), ZONE, **how, **read)
            return result.counts.as_dict(), result.errors, dump(store)
        finally:
            store.close()

    row_by_row = imported("rows", parallel=False)  # (fewer rows than BULK_LOAD_MIN_ROWS: the keyed path)
    settled: list[int] = []
    settle = SQLiteBulkWriter._settle_repeated_keys

    def spy(writer: SQLiteBulkWriter) -> None:
        settled.append(1)
        settle(writer)

    monkeypatch.setattr(sqlite_store, "BULK_LOAD_MIN_ROWS", 5)
    monkeypatch.setattr(SQLiteBulkWriter, "_settle_repeated_keys", spy)
    keyless = imported("keyless", parallel=True, readers=2, block_bytes=len(events[0]) * 7)
    assert settled == [1]
    assert keyless == row_by_row
    assert row_by_row[0] == {"accepted": 35, "inserted": 30, "updated": 2, "unchanged": 1, "stale": 2}
    stored = {row["id"]: row for row in row_by_row[2]}
    assert (stored["c3"]["agent"], stored["c5"]["agent"], stored["c6"]["queue"]) == ("bo", "ana", "tech")

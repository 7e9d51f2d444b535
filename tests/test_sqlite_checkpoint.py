"""The SQLite store checkpoints its write-ahead log on a thread of its own (``bot.storage.sqlite_checkpoint``):
committed contacts reach the database file without the writer copying them, and a steady stream of writes
still starts the log over, so it stays bounded."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import cast

import psutil
import pytest

from bot.storage import open_store, sqlite_checkpoint
from bot.storage import sqlite as sqlite_store
from bot.storage.errors import StoreUnavailable
from bot.storage.sqlite import SQLiteContactStore
from tests.builders import contact
from tests.store_support import sqlite_url

T0 = 1_780_000_000


def contacts_in_file_alone(db_path: Path, tmp_path: Path) -> int:
    """Contacts in the database file without its WAL: what a checkpoint has copied there (-1 when the copy was
    taken while a checkpoint was writing pages into the file, so it is torn: try again)."""
    alone = tmp_path / "alone.db"
    shutil.copyfile(db_path, alone)
    with closing(sqlite3.connect(alone)) as conn:
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'contacts'").fetchone()[0] == 0:
                return 0  # not even the schema has been copied yet
            return int(conn.execute("SELECT count(*) FROM contacts").fetchone()[0])
        except sqlite3.DatabaseError:  # "database disk image is malformed": copied mid-checkpoint
            return -1


def log_restarts(wal: Path) -> int:
    """The checkpoint sequence number in the WAL header, which SQLite raises each time it starts the log over."""
    with wal.open("rb") as log:
        log.seek(12)
        return int.from_bytes(log.read(4), "big")


def checkpoint_threads() -> int:
    return sum(thread.name == "sqlite-checkpoint" for thread in threading.enumerate())


def test_committed_contacts_reach_the_file_without_the_writer(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_SECONDS", 0.02)
    threads_before = checkpoint_threads()
    store = open_store(sqlite_url(db_path))
    try:
        store.upsert([contact(f"c{n}", f"k{n % 7}", T0 + 60 * n) for n in range(300)])
        # The writer's own checkpoint waits for WAL_CAP_PAGES (far more than this write): only the
        # background pass can have copied the contacts into the file.
        deadline = time.monotonic() + 10
        while contacts_in_file_alone(db_path, tmp_path) != 300:
            assert time.monotonic() < deadline, "no background checkpoint within 10 s"
            time.sleep(0.02)
        assert checkpoint_threads() == threads_before + 1
    finally:
        store.close()
    assert checkpoint_threads() == threads_before  # close stops it
    assert not Path(f"{db_path}-wal").exists()  # and the last connection still removes the log


def test_a_pass_syncs_the_pages_it_copied_so_the_writer_later_syncs_only_its_tail(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a stream of commits a pass never copies the whole log, and SQLite syncs the database file only after a
    pass that does: the writer's tail copy (holding the write lock) then waited for every page copied since the last
    sync (on the 10M-contact store: a 3.1 s fdatasync, every webhook batch stalled). The thread syncs the file
    itself after each pass that copied pages."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_SECONDS", 3600)  # passes are run by the test
    synced: list[int] = []  # inode of each file synced
    real_fdatasync = os.fdatasync

    def recording_fdatasync(file: int) -> None:
        synced.append(os.fstat(file).st_ino)
        real_fdatasync(file)

    monkeypatch.setattr(os, "fdatasync", recording_fdatasync)
    store = cast(SQLiteContactStore, open_store(sqlite_url(db_path)))
    database = os.stat(db_path)
    try:
        store.upsert([contact(f"c{n}", f"k{n % 7}", T0 + 60 * n) for n in range(100)])
        store._checkpointer.checkpoint()
        assert synced == [database.st_ino]
        store._checkpointer.checkpoint()  # nothing new was copied: nothing to sync
        assert synced == [database.st_ino]
        store.upsert([contact(f"d{n}", f"k{n % 7}", T0 + 60 * n) for n in range(100)])
        store._checkpointer.checkpoint()
        assert synced == [database.st_ino, database.st_ino]
    finally:
        store.close()


def another_process_reads_and_closes(db_path: Path) -> None:
    """What an ``acr-bot`` command does beside a running server: open the file, read, close (a last connection
    closing checkpoints the log and deletes it, when no other process holds the file)."""
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM contacts'); c.close()"
    )
    subprocess.run([sys.executable, "-c", script, str(db_path)], check=True, timeout=60)


def test_syncing_the_file_keeps_the_stores_locks_on_it(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing any descriptor of a file drops every POSIX lock the process holds on it
    (https://sqlite.org/howtocorrupt.html, 2.2). A sync through a descriptor opened and closed for it left the store
    without its shared lock: another process's last connection then found the file unused and deleted the log the
    running store was writing to."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_SECONDS", 3600)  # passes are run by the test
    store = cast(SQLiteContactStore, open_store(sqlite_url(db_path)))
    try:
        store.upsert([contact(f"c{n}", f"k{n % 7}", T0 + 60 * n) for n in range(100)])
        store._checkpointer.checkpoint()  # copies pages and syncs the file
        store.upsert([contact(f"d{n}", f"k{n % 7}", T0 + 60 * n) for n in range(100)])
        another_process_reads_and_closes(db_path)
        assert Path(f"{db_path}-wal").exists()
        assert store.count_contacts() == 200
    finally:
        store.close()
    assert not Path(f"{db_path}-wal").exists()  # the store's own last connection still removes it


def test_a_store_closing_keeps_the_locks_of_another_store_of_the_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores of one file in a process share the descriptor they sync with: the first to close leaves it open
    (closing it would drop the other's locks, as above)."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_SECONDS", 3600)
    first = cast(SQLiteContactStore, open_store(sqlite_url(db_path)))
    second = cast(SQLiteContactStore, open_store(sqlite_url(db_path)))
    try:
        second.upsert([contact(f"c{n}", f"k{n % 7}", T0 + 60 * n) for n in range(100)])
        second._checkpointer.checkpoint()
        second.close()
        first.upsert([contact(f"d{n}", f"k{n % 7}", T0 + 60 * n) for n in range(100)])
        another_process_reads_and_closes(db_path)
        assert Path(f"{db_path}-wal").exists()
        assert first.count_contacts() == 200
    finally:
        second.close()  # (a second close does nothing)
        first.close()


def store_with_slow_syncs(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, during_sync: Callable[[SQLiteContactStore, int], bool]
) -> tuple[SQLiteContactStore, list[float]]:
    """A store whose passes the test runs (a log of 8 pages starts over), and the times its syncs ended. Each sync
    first runs ``during_sync(store, syncs so far)``, and is slow (a pass longer than a quick one) when it says so."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_SECONDS", 3600)
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_PAGES", 8)
    store = cast(SQLiteContactStore, open_store(sqlite_url(db_path)))
    real_sync = store._checkpointer._sync
    syncs: list[float] = []

    def sync() -> None:
        if during_sync(store, len(syncs)):
            time.sleep(sqlite_checkpoint.QUICK_PASS_SECONDS)
        real_sync()
        syncs.append(time.monotonic())

    monkeypatch.setattr(store._checkpointer, "_sync", sync)
    return store, syncs


def test_commits_made_during_a_slow_sync_are_copied_before_the_writer_is_asked_for_the_tail(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first sync after a copy of the file (or an import) can take seconds while commits go on (on the 10M store:
    3.1 s, 20k frames meanwhile). The writer copies and syncs the tail holding the write lock, so the thread first
    copies and syncs what came during the slow pass, and asks the writer only after a quick one."""

    def commits_during_the_first(store: SQLiteContactStore, synced: int) -> bool:
        if synced == 0:  # commits arrive while the first sync drags on
            store.upsert([contact(f"d{n}", f"k{n % 7}", T0 + 60 * n) for n in range(40)])
        return synced == 0

    store, syncs = store_with_slow_syncs(db_path, monkeypatch, commits_during_the_first)
    try:
        store.upsert([contact(f"c{n}", f"k{n % 7}", T0 + 60 * n) for n in range(40)])
        store._checkpointer.checkpoint()
        frames, copied = store._checkpointer._synced_at  # what the last sync covered
        assert len(syncs) == 2 and frames == copied  # the write made during the first is copied and synced too
        assert store._checkpointer._restart_due
    finally:
        store.close()


def test_a_closing_store_does_not_wait_for_more_slow_passes(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``close`` waits for the pass in progress, not for the passes after a slow one (each may sync for seconds)."""

    def closing_during_each(store: SQLiteContactStore, synced: int) -> bool:
        store._checkpointer._stop.set()  # (what close does first)
        store.upsert([contact(f"d{synced}-{n}", f"k{n % 7}", T0 + 60 * n) for n in range(40)])  # more to copy
        return True

    store, syncs = store_with_slow_syncs(db_path, monkeypatch, closing_during_each)
    try:
        store.upsert([contact(f"c{n}", f"k{n % 7}", T0 + 60 * n) for n in range(40)])
        store._checkpointer.checkpoint()
        assert len(syncs) == 1
    finally:
        store.close()


def test_a_store_that_fails_to_open_leaves_no_descriptor_of_the_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The descriptor the checkpoint thread syncs through is closed by the store's ``close``: a store that never
    opened closes it itself (it stayed open for the life of the process)."""
    open_store(sqlite_url(db_path)).close()

    def failing_checkpointer(*args: object) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite_store, "SQLiteCheckpointer", failing_checkpointer)
    with pytest.raises(StoreUnavailable):
        open_store(sqlite_url(db_path))
    assert not [f for f in psutil.Process().open_files() if Path(f.path) == db_path.resolve()]


def test_a_steady_stream_of_writes_keeps_the_log_bounded(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The passes are run by the test between writes (as the thread would, on a schedule), so the bound is exact."""
    cap = 64
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_SECONDS", 3600)  # the thread itself stays idle
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_PAGES", cap)  # (the writer's own cap stays far above)
    store = cast(SQLiteContactStore, open_store(sqlite_url(db_path)))
    wal = Path(f"{db_path}-wal")
    frame = sqlite_store.PAGE_SIZE + 24  # a page and its header
    largest = 0
    try:
        for batch in range(60):  # each write touches a few pages; 60 of them, unchecked, would be far over the cap
            store.upsert(
                [contact(f"c{batch}-{n}", f"k{(batch * 31 + n) % 97}", T0 + 600 * batch + n) for n in range(40)]
            )
            largest = max(largest, wal.stat().st_size)
            store._checkpointer.checkpoint()
        assert store.count_contacts() == 60 * 40
    finally:
        store.close()
    # A pass finds the log over the cap; the next write copies its own frames after it commits; the one after
    # starts the log over. Unbounded, it grew to ~800 frames.
    assert largest <= 2 * cap * frame + 32, f"the WAL grew to {largest // frame} frames (cap {cap})"


def test_a_log_a_pass_could_not_finish_is_started_over_after_the_next_write(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames committed while a pass runs (here: behind a reader's snapshot, which a pass may not copy) are copied
    by the next write, after its commit; the write after that starts the log over instead of growing it."""
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL_SECONDS", 3600)  # passes are run by the test
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_PAGES", 8)
    store = cast(SQLiteContactStore, open_store(sqlite_url(db_path)))
    wal = Path(f"{db_path}-wal")
    written = iter(range(10_000))

    def write() -> None:
        n = next(written)
        store.upsert([contact(f"c{n}-{i}", f"k{(n * 31 + i) % 97}", T0 + 600 * n + i) for i in range(40)])

    try:
        write()
        with closing(sqlite3.connect(db_path)) as reader:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM contacts").fetchone()  # a snapshot before the next write
            write()
            store._checkpointer.checkpoint()  # copies up to the reader's snapshot only; the log is over 8 pages
            reader.execute("COMMIT")
        write()  # commits, then copies the rest of the log
        size, restarts = wal.stat().st_size, log_restarts(wal)
        write()  # starts the log over
        assert log_restarts(wal) == restarts + 1
        assert wal.stat().st_size == size  # (the file is reused, cut back only beyond WAL_CAP_PAGES)
    finally:
        store.close()

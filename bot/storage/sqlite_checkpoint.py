"""WAL checkpoints on a thread and connection of their own, so the writer does not pay for them.

In WAL mode every commit appends the pages it changed to the write-ahead log, and a checkpoint copies them
back into the database file and syncs both files. SQLite's automatic checkpoint runs on the committing
connection: a webhook batch that happened to cross the threshold waited for the copy and two fsyncs (measured:
about half of the commit time of a stream of 500-contact batches, 30 us of 90 us a contact).

Here a daemon thread runs a PASSIVE checkpoint (it never blocks a writer or a reader) every
``interval_seconds``; with nothing new in the log it costs a lock and a look at the log's header (no read
transaction, which would stop the writer from starting the log over). sqlite3 releases the GIL while SQLite
works, so the copy and the fsyncs overlap the writer's next batches.

A PASSIVE checkpoint cannot start the log over: SQLite does that when a write begins and every frame of the
log is already in the database, which never happens while commits keep arriving during the checkpoint. So once
a pass finds the log holding ``restart_frames``, the writer's next write runs a second pass right after its
commit (``restart_if_due``): it copies only the frames committed since the first (the writer waits for that
tail, not for the whole copy), and the write after it starts the log over. (The thread cannot take the write
lock itself for this: a busy writer releases and takes it again at once, and the thread would starve.) Durability is unchanged: a commit is acknowledged once it is in the log
(synchronous NORMAL), wherever the checkpoint runs.

A pass syncs the database file only when it has copied the whole log, which under a stream of commits it never
has: the pages it copies wait in the OS page cache. The pass that does copy the whole log (the writer's tail copy,
or its own checkpoint at the cap) then syncs the file, so the writer waited, holding the write lock, for every page
copied since the last sync. On the 10M-contact store that fdatasync took 3.1 s: every webhook batch stalled
(3-4.6 s once the file had just been copied and most of its pages were still unwritten). So the thread syncs the
database file itself after each pass that copied pages, outside every lock, and the writer's sync flushes only
the tail it copied. It syncs through a ``DatabaseFile``: a descriptor of the file kept open until the store's
connections are closed (closing a descriptor of the file drops the process's locks on it; see there).
``checkpoint`` keeps the writer's tail short.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import ClassVar

log = logging.getLogger("acr_bot.storage")
QUICK_PASS_SECONDS = 0.25
MAX_CATCH_UP_PASSES = 4


class SQLiteCheckpointer:
    """Checkpoints the WAL of one database file from a background thread until ``close``."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        sync: Callable[[], None],
        interval_seconds: float,
        restart_frames: int,
    ):
        self._conn = connect()
        self._sync = sync  # the database file's pages onto the disk
        self._synced_at = (0, 0)  # (log frames, frames copied) when this thread last synced the file
        self._interval = interval_seconds
        self._restart_frames = restart_frames
        self._restart_due = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except (sqlite3.Error, OSError) as problem:  # a full disk, say: the writer's own checkpoint is the fallback
                log.warning("background WAL checkpoint failed: %s", problem)

    def checkpoint(self) -> None:
        """A turn of the thread: a pass, and once the log is long enough to start over, more passes at once while
        the last one was slow (its sync, say: seconds after the file was copied or imported into), so that what the
        writer's tail copy then copies and syncs is what came during a quick pass. Then the writer is asked for it."""
        for _ in range(MAX_CATCH_UP_PASSES):
            started = time.monotonic()
            if self._pass() < self._restart_frames:
                return
            if time.monotonic() - started < QUICK_PASS_SECONDS:
                break
            if self._stop.is_set():  # closing: the store's last connection copies the rest
                return
        self._restart_due = True

    def _pass(self) -> int:
        """Copy what no reader still needs from the log, then sync what was copied; returns the log's frames."""
        _, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if copied > 0 and (frames, copied) != self._synced_at:
            self._sync()
            self._synced_at = (frames, copied)
        return int(frames)

    def restart_if_due(self, writer: sqlite3.Connection) -> None:
        """Called by the writer after a commit, holding the write lock: copy the tail of a long log, so that the
        next write starts it over. A no-op unless a pass asked for it (or while a pass is running: next time)."""
        if self._restart_due:
            busy, _, _ = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self._restart_due = bool(busy)

    def close(self) -> None:
        """Stop the thread (after the checkpoint in progress, if any) and close its connection."""
        self._stop.set()
        self._thread.join()
        self._conn.close()


class DatabaseFile:
    """A descriptor of a database file to sync it with, shared by the stores of the file in this process and closed
    when the last of them closes, after its connections.

    POSIX advisory locks belong to a process and a file, not to a descriptor: closing ANY descriptor of the file
    drops every lock the process's SQLite connections hold on it (https://sqlite.org/howtocorrupt.html, 2.2). Opened
    and closed for each sync, it left the store's connections without their shared lock on the file, and another
    process's last connection (an ``acr-bot`` command, say) then found the file unused, and checkpointed and deleted
    the write-ahead log under the running server."""

    _held: ClassVar[dict[tuple[int, int], list[int]]] = {}  # (device, inode) -> [descriptor, stores holding it]
    _held_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str):
        with DatabaseFile._held_lock:
            status = os.stat(path)
            self._key = (status.st_dev, status.st_ino)
            held = DatabaseFile._held.get(self._key)
            if held is None:  # (never opened twice: closing the second descriptor would drop the locks too)
                held = DatabaseFile._held[self._key] = [os.open(path, os.O_RDONLY), 0]
            held[1] += 1
            self._descriptor = held[0]
            self._closed = False

    def sync(self) -> None:
        """The file's pages onto the disk, whichever descriptor wrote them (fdatasync where the system has it:
        SQLite syncs the size itself)."""
        getattr(os, "fdatasync", os.fsync)(self._descriptor)

    def close(self) -> None:
        """Let go of the descriptor (closed once no store of the file in this process holds it). Call it after
        the store's connections are closed."""
        with DatabaseFile._held_lock:
            if self._closed:
                return
            self._closed = True
            held = DatabaseFile._held[self._key]
            held[1] -= 1
            if held[1] == 0:
                del DatabaseFile._held[self._key]
                os.close(held[0])

"""A fixed pool of read-only SQLite connections: the store's readers, however many threads ask.

Each connection keeps a page cache of its own (``READER_CACHE_KIB``). One connection per thread, as before, let a
server's ~40 worker threads (Starlette's thread pool, bolt's handlers, the scheduler) each fill one: memory that
grew with the number of threads. Here at most ``size`` connections are ever open; a read borrows one and gives it
back when it is done (rolled back if it left a transaction open), so a connection serves one thread at a time.
A thread that already holds one and reads again (a nested read) gets the same one, as it did before: nested
reads never wait for a second connection, so they cannot deadlock the pool.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from bot.storage.errors import StoreUnavailable

DEFAULT_READERS = 4  # SQLITE_READERS: reads take milliseconds; 4 keeps two cores busy with room for a long one
# How long a read waits for a free connection. Reads wait only for other reads (never for a writer: WAL), so this
# is a guard against a stuck read, not a tuning knob: far above any real question, and never the writers' busy
# timeout, which an operator may set low for fast webhook 503s.
READER_WAIT_SECONDS = 30.0


class _Lease:
    """The connection one thread holds, and how deep its nested reads go."""

    __slots__ = ("conn", "depth")

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.depth = 0


class SQLiteReaders:
    """At most ``size`` reader connections, made by ``connect`` when first needed and kept open until ``close``.

    ``connection()`` waits up to ``wait_seconds`` for a free one, then raises ``StoreUnavailable``: every reader
    held that long means a stuck read, and a clear, retryable error beats waiting forever.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int, wait_seconds: float, path: Path):
        if size < 1:
            raise ValueError(f"a reader pool needs at least one connection, not {size}")
        self._connect = connect
        self.size = size
        self._wait_seconds = wait_seconds
        self._path = path
        self._free: list[sqlite3.Connection] = []
        self._opened: list[sqlite3.Connection] = []
        self._slots = 0  # connections open or being opened
        self._changed = threading.Condition(threading.Lock())
        self._local = threading.local()

    @property
    def opened(self) -> int:
        """How many connections are open or being opened now (never more than ``size``)."""
        with self._changed:
            return self._slots

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A reader connection for this thread until the block ends (the same one for nested reads)."""
        lease: _Lease | None = getattr(self._local, "lease", None)
        if lease is None:
            lease = self._local.lease = _Lease()
        with self._changed:
            if lease.conn is not None:
                lease.depth += 1
                conn = lease.conn
            else:
                conn = None
        if conn is None:
            conn = self._borrow()
            with self._changed:
                lease.conn, lease.depth = conn, 1
        try:
            yield conn
        finally:
            # ``lease`` is this thread's own object, so this is right even when a suspended generator holding the
            # connection is finished by the garbage collector in another thread.
            with self._changed:
                lease.depth -= 1
                done = lease.depth == 0
                if done:
                    lease.conn = None
            if done:
                self._give_back(conn)

    def _borrow(self) -> sqlite3.Connection:
        deadline = time.monotonic() + self._wait_seconds
        with self._changed:
            while not self._free and self._slots >= self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreUnavailable(
                        f"all {self.size} reader connections of the database {self._path} stayed busy for "
                        f"{self._wait_seconds:g} s (SQLITE_READERS); try again",
                        retry_after_seconds=1,
                    )
                self._changed.wait(left)
            if self._free:
                return self._free.pop()
            self._slots += 1  # taken now; the connection is made outside the lock
        try:
            conn = self._connect()
        except BaseException:
            with self._changed:
                self._slots -= 1
                self._changed.notify()
            raise
        with self._changed:
            self._opened.append(conn)
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        """Return ``conn`` to the free list, with no transaction left open; a connection that cannot even roll
        back is closed and its slot freed."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:  # (a closed store's connection too)
            with suppress(sqlite3.Error):
                conn.close()
            with self._changed:
                if conn in self._opened:
                    self._opened.remove(conn)
                    self._slots -= 1
                    self._changed.notify()
            return
        with self._changed:
            if conn in self._opened:  # (not when the store was closed meanwhile)
                self._free.append(conn)
                self._changed.notify()

    def close(self) -> None:
        """Close every connection (those in use too: the store is being closed)."""
        with self._changed:
            opened, self._opened, self._free = self._opened, [], []
            self._slots -= len(opened)
        for conn in opened:
            with suppress(sqlite3.Error):
                conn.close()

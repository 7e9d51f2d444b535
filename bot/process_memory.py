"""Keeping the resident memory of a long-running ``acr-bot serve`` flat (on glibc, as in Debian's Python).

What grows in a server under load is not Python's objects (flat, by tracemalloc) but memory that glibc's malloc
keeps after it was freed (bench/soak.py --trace-memory measures both): each thread that allocates gets an arena
of its own (up to 8 per core), and an arena gives freed pages back to the system only from its top, so the
freed memory of ~15 threads' short bursts (a question's arrays, a chart, a batch) stays resident. Three standard
remedies: few arenas (``M_ARENA_MAX``, set before the server's threads start), a fixed ``M_MMAP_THRESHOLD`` (big
blocks in mappings of their own, unmapped when freed) and ``malloc_trim(0)`` every ten seconds, which hands the free
pages of every arena back. Between trims an arena keeps ``M_TOP_PAD`` of free memory at its top instead of giving
back all it can at every free: a fixed threshold sets glibc's trim threshold back to 128 KiB, and each webhook
request's few MiB of short-lived blocks then came from pages handed back after the previous one and faulted in
again (2.4 page faults a contact, ~6% of the server's CPU on Firehose deliveries of 500 CTRs).
``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TOP_PAD_`` in the environment are left as the
operator set them. On another C library they do nothing. SQLite's own memory is held by ``limit_sqlite_cache``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sqlite3
import threading
from contextlib import closing

log = logging.getLogger("acr_bot.memory")

MALLOC_ARENAS = 2  # as MALLOC_ARENA_MAX=2: what long-running threaded Python servers commonly use
MMAP_THRESHOLD = 1 << 20  # bytes: blocks this large get a mapping of their own (see MemoryKeeper)
TOP_PAD = 64 << 20  # bytes of free memory an arena keeps at its top until the next trim (see the module)
TRIM_EVERY_SECONDS = 10.0  # a trim costs ~0.1 ms when little was freed since the last, ~20 ms after 120 MiB
_M_ARENA_MAX = -8  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_TOP_PAD = -2


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc (musl, macOS): its own malloc, left as it is
        return None


def on_glibc() -> bool:
    """Whether this process's C library is glibc (whose malloc the keeper tunes)."""
    return _glibc() is not None


class MemoryKeeper:
    """Tunes glibc's malloc when made (call it before the threads start), then trims free memory every ``every``
    seconds in a thread of its own until stopped. ``available`` is False (and nothing happens) where glibc is not
    the C library.

    The tuning: few arenas (``arenas``), and blocks of ``mmap_threshold`` bytes or more always in mappings of their
    own, which go back to the system when freed. glibc's default threshold moves up to the largest block freed
    (up to 32 MiB), so after a question's first big arrays the next ones come from an arena, where they stay
    resident behind smaller blocks still in use. Up to ``top_pad`` bytes freed at an arena's top stay there for
    the next allocations until the next trim. ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TOP_PAD_`` in the environment are left as the operator set them."""

    def __init__(
        self,
        every: float = TRIM_EVERY_SECONDS,
        arenas: int = MALLOC_ARENAS,
        mmap_threshold: int = MMAP_THRESHOLD,
        top_pad: int = TOP_PAD,
    ):
        self._libc = _glibc()
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._libc is None:
            return
        for variable, option, value in (
            ("MALLOC_ARENA_MAX", _M_ARENA_MAX, arenas),
            ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, mmap_threshold),
            ("MALLOC_TOP_PAD_", _M_TOP_PAD, top_pad),
        ):
            # an operator's own choice in the environment, which glibc already applied, is left as it is
            if variable not in os.environ and not self._libc.mallopt(option, value):
                log.warning("glibc refused %s=%d; memory may grow under load", variable, value)

    @property
    def available(self) -> bool:
        return self._libc is not None

    def trim(self) -> bool:
        """Give free malloc memory back to the system now; True when some was."""
        return bool(self._libc is not None and self._libc.malloc_trim(0))

    def start(self) -> None:
        if self._libc is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.trim()


def limit_sqlite_cache(mib: int) -> None:
    """Hold SQLite's memory in this process (the page caches of all its connections, and their statements) to
    about ``mib`` MiB: SQLite's soft heap limit, past which it reuses its least recently used cache pages instead
    of allocating more. Without it each connection's cache grows with the database up to its own ``cache_size``,
    so a server's memory keeps rising for hours after start; with it the caches fill to the limit and stay."""
    with closing(sqlite3.connect(":memory:")) as conn:  # the limit is process-wide: any connection sets it
        conn.execute(f"PRAGMA soft_heap_limit = {int(mib) * 2**20}")


def _sqlite_library() -> ctypes.CDLL | None:
    try:
        import _sqlite3  # the module's own library: symbols resolve to the SQLite that sqlite3 really uses

        library = ctypes.CDLL(_sqlite3.__file__)
        library.sqlite3_memory_used.restype = ctypes.c_int64
        return library
    except (OSError, AttributeError, ImportError):
        return None


_SQLITE = _sqlite_library()


def sqlite_memory_used() -> int:
    """Bytes of SQLite's heap in use in this process now (0 where the library cannot be reached)."""
    return int(_SQLITE.sqlite3_memory_used()) if _SQLITE is not None else 0

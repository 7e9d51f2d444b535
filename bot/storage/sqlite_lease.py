"""The scheduler lease of a SQLite store: an exclusive ``flock`` on a file beside the database.

The operating system drops the lock with the process, however it ends, so a second ``acr-bot serve`` on the same
file stands by instead of double-posting, and takes over when the first one stops.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class SQLiteSchedulerLease:
    def __init__(self, database: Path):
        self._path = database.with_name(database.name + ".scheduler-lock")
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Unlocked first: closing only this descriptor would leave the lock with any process forked meanwhile
            # (the platform decoding workers), whose copies share the locked open file until they end.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

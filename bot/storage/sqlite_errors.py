"""SQLite's errors in words an operator can act on: which file, what is wrong, what to do.

Busy, full, read-only, unopenable and damaged databases become ``StoreUnavailable`` (a ``UserError``: one
``Error:`` line in the CLI, a 503 with ``Retry-After`` at the webhook), never a bare ``DatabaseError``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.storage.errors import StoreUnavailable

BUSY_RETRY_SECONDS = 5
FULL_RETRY_SECONDS = 60


def explain(problem: sqlite3.Error, path: str | Path) -> StoreUnavailable | None:
    """The ``StoreUnavailable`` for ``problem`` on the database at ``path``, or None for other errors (bugs)."""
    name = getattr(problem, "sqlite_errorname", "") or ""
    text = str(problem)
    where = Path(path)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        return StoreUnavailable(
            f"the database {where} is busy with another write (an import holds it for a whole file); "
            f"nothing was written, try again in a few seconds",
            retry_after_seconds=BUSY_RETRY_SECONDS,
        )
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return StoreUnavailable(
            f"the disk holding the database {where} is full; nothing was written. Free some space (or set "
            "RETENTION_DAYS) and try again",
            retry_after_seconds=FULL_RETRY_SECONDS,
        )
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return StoreUnavailable(
            f"the database {where} is read-only for this process; check the permissions of the file and of its "
            "directory (SQLite writes -wal and -shm files beside it)",
            retry_after_seconds=FULL_RETRY_SECONDS,
        )
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text or "malformed" in text:
        return StoreUnavailable(
            f"{where} is not a SQLite database or is damaged ({text}); restore it from a backup "
            "(see README, Backups) or point DATABASE_URL at another file",
            retry_after_seconds=FULL_RETRY_SECONDS,
        )
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR")) or "unable to open" in text:
        kind = "a directory" if where.is_dir() else "not a file this process can open and write"
        return StoreUnavailable(
            f"cannot open the database {where}: it is {kind} ({text}); set DATABASE_URL to a writable file",
            retry_after_seconds=FULL_RETRY_SECONDS,
        )
    return None

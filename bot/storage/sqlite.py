"""The SQLite contact store. Every SQL statement and sqlite-utils call of the project lives in this package."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.storage import UpsertCounts
from bot.storage.sqlite_migrations import migrations
from metrics.records import Contact

CHUNK = 5000
_WRITE_COLUMNS = Contact._fields  # a Contact is written as it is: its fields are the columns, in order
_UPSERT_SQL = "INSERT INTO contacts ({cols}) VALUES ({marks}) ON CONFLICT (source, id) DO UPDATE SET {sets}".format(
    cols=", ".join(_WRITE_COLUMNS),
    marks=", ".join("?" * len(_WRITE_COLUMNS)),
    sets=", ".join(
        f"{col} = excluded.{col}"
        for col in (*[c for c in _WRITE_COLUMNS if c not in ("source", "id")], "received_at")
    ),
)
# The derived data: for every contact of a touched customer, the start of the first repeatable contact of
# that customer strictly after it. Only rows whose value changes are written.
_REFRESH_NEXT_REPEAT_SQL = """
WITH fresh AS (
    SELECT c.pk AS pk, (
        SELECT min(r.started_us) FROM contacts AS r
        WHERE r.customer_id = c.customer_id AND r.repeatable = 1 AND r.started_us > c.started_us
    ) AS next_repeat_us
    FROM contacts AS c
    WHERE c.customer_id IN (SELECT customer_id FROM temp.touched_customers)
)
UPDATE contacts SET next_repeat_us = fresh.next_repeat_us
FROM fresh
WHERE contacts.pk = fresh.pk AND contacts.next_repeat_us IS NOT fresh.next_repeat_us
"""


class SQLiteContactStore:
    """Contacts in one SQLite file: WAL, a busy timeout, one writer at a time, readers per thread."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._writer = self._connect(check_same_thread=False)
        db = Database(self._writer)
        with self._write_lock:
            migrations.apply(db)
        self._writer.execute("CREATE TEMP TABLE IF NOT EXISTS touched_customers (customer_id TEXT PRIMARY KEY)")

    def _connect(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=check_same_thread,
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            readers = self.__dict__.setdefault("_readers", [])
            readers.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.__dict__.get("_readers", []):
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # closed from another thread's point of view
                pass
        self._writer.close()

    # --- writing -------------------------------------------------------------------------------------

    def upsert(self, contacts: Iterable[Contact]) -> UpsertCounts:
        with self.bulk() as writer:
            iterator = iter(contacts)
            while chunk := list(islice(iterator, CHUNK)):
                writer.add(chunk)
        return writer.counts

    @contextmanager
    def bulk(self) -> Iterator[_SQLiteBulkWriter]:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM temp.touched_customers")
                writer = _SQLiteBulkWriter(conn)
                yield writer
                conn.execute(_REFRESH_NEXT_REPEAT_SQL)
                conn.execute(
                    "UPDATE store_stats SET value = value + ? WHERE name = 'contacts'", (writer.counts.inserted,)
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # --- reading -------------------------------------------------------------------------------------

    def count_contacts(self) -> int:
        row = self._reader().execute("SELECT value FROM store_stats WHERE name = 'contacts'").fetchone()
        return int(row[0])

    def get_contact(self, source: str, contact_id: str) -> dict[str, Any] | None:
        cursor = self._reader().execute("SELECT * FROM contacts WHERE source = ? AND id = ?", (source, contact_id))
        row = cursor.fetchone()
        return None if row is None else dict(zip([d[0] for d in cursor.description], row, strict=True))

    def iter_contacts(self) -> Iterator[dict[str, Any]]:
        cursor = self._reader().execute("SELECT * FROM contacts ORDER BY source, id")
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(names, row, strict=True))


class _SQLiteBulkWriter:
    """Upserts chunks inside the transaction opened by ``SQLiteContactStore.bulk``."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self.counts = UpsertCounts()

    def add(self, contacts: Sequence[Contact]) -> None:
        known = self._stored_versions(contacts)
        changed: list[Contact] = []
        touched: set[str] = set()
        counts = self.counts
        for contact in contacts:
            key = (contact.source, contact.id)
            before = known.get(key)
            if before is None:
                counts.inserted += 1
            elif before[1] == contact.raw:
                counts.unchanged += 1
                continue
            else:
                counts.updated += 1
                touched.add(before[0])
            known[key] = (contact.customer_id, contact.raw)
            touched.add(contact.customer_id)
            changed.append(contact)
        if changed:
            self._conn.executemany(_UPSERT_SQL, changed)
            self._conn.executemany(
                "INSERT OR IGNORE INTO temp.touched_customers (customer_id) VALUES (?)", [(c,) for c in touched]
            )

    def _stored_versions(self, contacts: Sequence[Contact]) -> dict[tuple[str, str], tuple[str, str]]:
        """(source, id) -> (customer_id, raw) of the stored versions of these contacts."""
        ids_by_source: dict[str, list[str]] = {}
        for contact in contacts:
            ids_by_source.setdefault(contact.source, []).append(contact.id)
        known: dict[tuple[str, str], tuple[str, str]] = {}
        for source, ids in ids_by_source.items():
            for start in range(0, len(ids), 30_000):
                part = ids[start : start + 30_000]
                rows = self._conn.execute(
                    f"SELECT id, customer_id, raw FROM contacts WHERE source = ? AND id IN ({','.join('?' * len(part))})",
                    (source, *part),
                )
                for contact_id, customer_id, raw in rows:
                    known[(source, contact_id)] = (customer_id, raw)
        return known

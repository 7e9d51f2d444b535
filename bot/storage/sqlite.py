"""The SQLite contact store. Every SQL statement and sqlite-utils call of the project lives in this package."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence, Sized
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from itertools import chain, islice
from operator import le
from pathlib import Path
from typing import Any, Final

from sqlite_utils import Database

from bot.roster import RosterEntry
from bot.storage import (
    COPIED_TABLES,
    AgentLink,
    PackedContacts,
    TableRows,
    UpsertCounts,
    add_all,
    sqlite_links,
    sqlite_metrics,
    sqlite_rollups,
    sqlite_roster,
    sqlite_schedules,
    sqlite_why,
)
from bot.storage.errors import StoreUnavailable, newer_schema
from bot.storage.rollup_cache import RollupCache
from bot.storage.sqlite_checkpoint import DatabaseFile, SQLiteCheckpointer
from bot.storage.sqlite_errors import explain
from bot.storage.sqlite_lease import SQLiteSchedulerLease
from bot.storage.sqlite_migrations import known_migrations, migrations
from bot.storage.sqlite_raw import RawCodec, RawPacker
from bot.storage.sqlite_readers import DEFAULT_READERS, READER_WAIT_SECONDS, SQLiteReaders
from bot.storage.sqlite_transactions import immediate_transaction, read_snapshot
from metrics.records import Contact
from metrics.why import WhyQuery, WhyRow
from metrics.windows import QuickReturns

PURGE_BATCH = 5000  # contacts deleted per write transaction by a purge or an erasure
BULK_LOAD_MIN_ROWS = 50_000  # below this, building the indexes at the end does not pay (see SQLiteBulkWriter)
# WAL checkpoints run on a thread of their own (sqlite_checkpoint), at most once every this many seconds: a
# stream of small writes dirties the same index pages again and again, and each checkpoint copies a page once
# however often it was rewritten.
CHECKPOINT_INTERVAL_SECONDS = 1.0
# Once the WAL holds this many pages, the next write copies the last few frames after its commit, so the write after
# it starts the log over (see sqlite_checkpoint).
WAL_RESTART_PAGES = 10_000
# The writer's own automatic checkpoint, only once the WAL holds this many pages: a bound if the thread lags (up to
# 800 MiB of log). Far above the restart: at twice it, a thread still syncing a freshly copied file (seconds) left
# the copy to the webhook batch that reached the cap, and it waited for the sync too. The WAL file is cut back to
# this size when the log starts over (journal_size_limit), not to the restart's: the write that starts it over
# does the cut, holding the write lock, and cutting 540 MiB off took it 0.54 s (ext4).
WAL_CAP_PAGES = 5 * WAL_RESTART_PAGES
PAGE_SIZE = 16_384  # bytes, for new files; bulk import measured ~10% faster than with 4 KiB pages
READER_CACHE_KIB = 65_536  # page cache of each reader connection (at most SQLITE_READERS of them)
WRITER_CACHE_KIB = 32_768  # the writer's page cache (it also bounds the sorter of an index build: see _open)
# The writer's cache while a bulk load adds rows (indexes deferred): the (source, id) index takes every row, and
# platform ids are random, so each chunk touches most of its leaves. 1M CTRs: ~60 MB of index; with 32 MiB the
# adds took 25.5 s of CPU, with 96 MiB 17.3 s (bench/amazon_connect.py's writer alone). Back to
# WRITER_CACHE_KIB before the index builds, so that their sorter stays as small as before.
BULK_LOAD_CACHE_KIB = 98_304
# Threads that help the writer sort while a bulk load builds its deferred indexes and candidates (SQLite's worker
# threads; none otherwise). The reader processes are done by then, so the other cores are free: 1M CTRs, the
# candidates' INSERT 18.6-19.1 -> 11.9-14.7 s of wall time on 2 cores (load 3.5-4).
BULK_SORT_THREADS = max(1, (os.cpu_count() or 1) - 1)
REFRESH_BATCH_DAYS = 2  # UTC days rolled up (and installed per write) at a time by refresh_rollups
REFRESH_PAUSE_SECONDS = 0.005
REFRESH_ON_READ_DAYS = 1  # stale UTC days a question may roll up first (~0.4 s at 27k contacts a day, hours too)
_WRITE_COLUMNS = Contact._fields  # a Contact is written as it is: its fields are the columns, in order
_UPSERT_SQL = "INSERT INTO contacts ({cols}) VALUES ({marks}) ON CONFLICT (source, id) DO UPDATE SET {sets}".format(
    cols=", ".join(_WRITE_COLUMNS),
    marks=", ".join("?" * len(_WRITE_COLUMNS)),
    sets=", ".join(
        f"{col} = excluded.{col}" for col in (*[c for c in _WRITE_COLUMNS if c not in ("source", "id")], "received_at")
    ),
)
_WIDTH: Final = len(_WRITE_COLUMNS)
# New rows go in as multi-row INSERTs: one statement run per 100 rows instead of per row halved the
# insert cost of a big import (the per-run set-up, not the binding, was most of it).
ROWS_PER_INSERT = 100
_INSERT_NEW_SQL = "INSERT {how}INTO contacts ({cols}, received_at) VALUES {rows}{conflict}"
KEY_INDEX = "contacts_key"  # the (source, id) unique index (migration m_contacts_key_index)


@lru_cache(maxsize=512)  # (keyed by the NULL columns too: many texts over a server's life)
def _insert_new_sql(rows: int, keyed: bool = True, valid: bool = False, nulls: tuple[int, ...] = ()) -> str:
    """The INSERT of ``rows`` new rows. Its text is the same for every write, so the connection's statement
    cache compiles it once: the write's ``received_at`` is parameter ?1, shared by every row (one binding per
    statement; per row it cost about 2 us a row), and the rows' values follow from ?2 on. (A literal
    timestamp in the text made a new ~200 KiB statement per write, and the statement cache kept the last 128
    of them: ~26 MiB of a server's memory, and a compile per write.) ``keyed``: a row whose key is stored is
    skipped; without, while an initial load has dropped the key index, every row goes in.

    ``valid``: every row is known to meet the table's constraints (``_surely_valid``), so OR IGNORE can only skip
    a stored key, as ON CONFLICT (source, id) DO NOTHING does. Why: a statement that may abort half-way (a row
    breaking a CHECK or NOT NULL constraint aborts it) makes SQLite copy each page it first changes into a
    statement journal, to undo the statement alone: a whole 16 KiB page for each random index leaf a row goes
    to. OR IGNORE never aborts, so it needs none: the INSERT of a webhook group of 2,000 CTRs (200k-contact
    store) took 31.5 us a contact with the journal, 19.1 without.

    ``nulls``: columns (positions in a Contact) that are NULL in every row, written as the literal NULL and not
    bound: the rows' values then leave them out (``_bindable``)."""
    kept = [column for column in range(_WIDTH) if column not in nulls]
    width = len(kept)
    slot = {column: 2 + index for index, column in enumerate(kept)}
    marks = ", ".join(
        "({}, ?1)".format(
            ", ".join("NULL" if column in nulls else f"?{row * width + slot[column]}" for column in range(_WIDTH))
        )
        for row in range(rows)
    )
    how, conflict = (
        ("OR IGNORE ", "") if keyed and valid else ("", " ON CONFLICT (source, id) DO NOTHING" if keyed else "")
    )
    return _INSERT_NEW_SQL.format(how=how, cols=", ".join(_WRITE_COLUMNS), rows=marks, conflict=conflict)


SETTLE_ROWS = 10_000  # rows of keys a keyless load added more than once, read per statement (_settle_repeated_keys)
# Positions in a Contact: the writer also takes plain tuples (what the import's reader process sends).
_SOURCE: Final = 0
_ID: Final = 1
_CUSTOMER: Final = 2
_ESCALATED: Final = 10
_RESOLVED: Final = 11
_STARTED: Final = 13
_UPDATED: Final = 15
_RAW: Final = 16
assert [_WRITE_COLUMNS[i] for i in (_SOURCE, _ID, _CUSTOMER, _STARTED, _UPDATED, _RAW)] == [
    "source",
    "id",
    "customer_id",
    "started_us",
    "updated_us",
    "raw",
]
# A settled key's row gets the version kept (every column but the key; received_at is the write's own).
_SETTLED: Final = tuple(i for i, col in enumerate(_WRITE_COLUMNS) if col not in ("source", "id"))
_SETTLE_SQL = "UPDATE contacts SET {} WHERE pk = ?".format(", ".join(f"{_WRITE_COLUMNS[i]} = ?" for i in _SETTLED))
# The constraints of the contacts table (migrations), which _surely_valid checks before a write may skip invalid
# rows instead of failing on them (test_bulk_write checks this list against the schema).
NOT_NULL_COLUMNS: Final = (
    "source",
    "id",
    "customer_id",
    "channel",
    "direction",
    "tier",
    "escalated",
    "started_us",
    "raw",
)
DIRECTIONS: Final = frozenset({"inbound", "outbound"})
_NOT_NULL: Final = tuple(_WRITE_COLUMNS.index(column) for column in NOT_NULL_COLUMNS)
_DIRECTION: Final = _WRITE_COLUMNS.index("direction")
_TIER: Final = _WRITE_COLUMNS.index("tier")
_ENDED: Final = _WRITE_COLUMNS.index("ended_us")
_NULLABLE: Final = tuple(i for i, column in enumerate(_WRITE_COLUMNS) if column not in NOT_NULL_COLUMNS)


def _surely_valid(values: list[Any]) -> bool:
    """Whether every row (values one after another) meets the contacts table's constraints: no NULL where
    NOT NULL, ``direction IN ('inbound', 'outbound')``, ``tier >= 1``, ``ended_us >= started_us``. False also for
    values of another type than the mapping makes (the database then judges them, as it always did): a few
    passes over the columns in C, well under a microsecond a row."""
    if any(None in values[column::_WIDTH] for column in _NOT_NULL):
        return False
    if not DIRECTIONS.issuperset(values[_DIRECTION::_WIDTH]):
        return False
    tiers, starts, ends = values[_TIER::_WIDTH], values[_STARTED::_WIDTH], values[_ENDED::_WIDTH]
    if set(map(type, tiers)) != {int} or min(tiers) < 1 or set(map(type, starts)) != {int}:
        return False
    ends_given = [(end, start) for end, start in zip(ends, starts, strict=True) if end is not None]
    return all(type(end) is int and end >= start for end, start in ends_given)


def _bindable(values: list[Any], nulls: tuple[int, ...] = ()) -> list[Any]:
    """A copy of the rows' values (one after another) that Python's sqlite3 binds faster: the flags as integers and
    the compressed raws as bytearrays, and without the columns ``nulls`` (NULL in every row: ``_null_columns``).
    Why: sqlite3 binds int, float, str and bytearray directly, and looks every other value (bool, bytes, None) up
    as an adapter first, ~0.5 us a value. The INSERT of groups of 2,000 CTRs (120k-contact store) took 17.8-21.1
    us a CTR as given, 16.2-18.4 like this. (NULLs bound as empty bytearrays and turned back by ``nullif(?, x'')``
    in the INSERT were slower: 23.8-27.2; a CTR's team, reason and resolved are usually NULL in every row.)"""
    width = _WIDTH - len(nulls)
    bindable: list[Any] = [None] * (len(values) // _WIDTH * width)
    kept = (column for column in range(_WIDTH) if column not in nulls)
    for at, column in enumerate(kept):
        given = values[column::_WIDTH]
        if column in (_ESCALATED, _RESOLVED):
            given = [int(flag) if type(flag) is bool else flag for flag in given]
        elif column == _RAW:
            given = [bytearray(raw) if type(raw) is bytes else raw for raw in given]
        bindable[at::width] = given
    return bindable


def _null_columns(values: list[Any], count: int) -> tuple[int, ...]:
    """The nullable columns that are NULL in each of the ``count`` rows (values one after another)."""
    return tuple(column for column in _NULLABLE if values[column::_WIDTH].count(None) == count)


# The derived data: the start of the customer's first repeatable contact strictly after each contact.
# A write can change it only for contacts of the customers it touched, and only in a stretch of time:
# with ``since_us`` and ``until_us`` the earliest and latest starts the write added, removed or moved for
# that customer (old and new values), the last repeatable start before ``since_us`` (``from_us``) is
# unchanged, so a contact that starts before ``from_us`` keeps its value; so does one that starts after
# ``until_us``, as nothing after it changed. Every written contact starts in between. A contact that
# arrives in time order thus re-reads one or two of its customer's contacts, not the whole history.
_WIDEN_TOUCHED = """
ON CONFLICT (customer_id) DO UPDATE
SET since_us = min(since_us, excluded.since_us), until_us = max(until_us, excluded.until_us)
"""
_TOUCHED_BY_INSERTS_SQL = (
    "INSERT INTO temp.touched_customers (customer_id, since_us, until_us) "
    "SELECT customer_id, min(started_us), max(started_us) FROM contacts NOT INDEXED WHERE pk > ? GROUP BY customer_id"
    + _WIDEN_TOUCHED
)
_TOUCHED_BY_UPDATES_SQL = (
    "INSERT INTO temp.touched_customers (customer_id, since_us, until_us) VALUES (?, ?, ?)" + _WIDEN_TOUCHED
)
_TOUCHED_FROM_SQL = """
UPDATE temp.touched_customers SET from_us = coalesce(
    (
        SELECT max(p.started_us) FROM contacts AS p
        WHERE p.customer_id = touched_customers.customer_id AND p.repeatable = 1 AND p.started_us < since_us
    ),
    -9223372036854775808
)
"""
# The start of the customer's first repeatable contact strictly after contact ``c`` (the customer index
# answers it), worked out once every row of the write is in.
_FRESH_NEXT_REPEAT = (
    "(SELECT min(r.started_us) FROM contacts AS r "
    "WHERE r.customer_id = c.customer_id AND r.repeatable = 1 AND r.started_us > c.started_us)"
)
# The candidates among the rows this write inserted, with their next repeat. OR REPLACE when a row inserted and
# then updated by the same write may already have a candidate row, from the update trigger; else OR IGNORE: no row
# can conflict, and the SELECT gives no NULL where metric_contacts has NOT NULL (CANDIDATE: the agent is given).
# Not a plain INSERT: a statement that may abort half-way needs a statement journal (see _insert_new_sql), 2 us a
# contact here.
_INTO_METRIC_CONTACTS_SQL = f"""INTO metric_contacts ({", ".join(sqlite_metrics.CANDIDATE_COLUMNS)})
SELECT c.started_us, c.pk, c.end_us, {_FRESH_NEXT_REPEAT}, c.tier, c.escalated, c.resolved, c.agent, c.team,
    c.queue, c.channel, c.reason
FROM contacts AS c WHERE c.pk > ? AND {sqlite_metrics.CANDIDATE}
ORDER BY c.started_us, c.pk
"""


def _insert_metric_contacts_sql(replace: bool) -> str:
    return ("INSERT OR REPLACE " if replace else "INSERT OR IGNORE ") + _INTO_METRIC_CONTACTS_SQL


# The candidates that were stored before this write and whose next repeat it changed. Only those rows are
# written; the customer index and the candidates' primary key answer everything, no contacts row is read.
_NEXT_REPEAT_CHANGES_SQL = f"""
INSERT INTO temp.next_repeat_changes (started_us, pk, next_repeat_us)
SELECT started_us, pk, fresh FROM (
    SELECT m.started_us AS started_us, m.pk AS pk, m.next_repeat_us AS old, {_FRESH_NEXT_REPEAT} AS fresh
    FROM temp.touched_customers AS t
    CROSS JOIN contacts AS c ON c.customer_id = t.customer_id
    CROSS JOIN metric_contacts AS m ON m.started_us = c.started_us AND m.pk = c.pk
    WHERE c.started_us BETWEEN t.from_us AND t.until_us AND c.pk <= ?
    LIMIT -1 OFFSET 0  -- not flattened into the outer query, which would run the subquery twice a row
)
WHERE old IS NOT fresh
"""
# (Not UPDATE ... FROM: SQLite scans the whole target for that form; this one looks up each changed row.)
_APPLY_NEXT_REPEAT_SQL = """
UPDATE metric_contacts
SET next_repeat_us = (
    SELECT n.next_repeat_us FROM temp.next_repeat_changes AS n
    WHERE n.started_us = metric_contacts.started_us AND n.pk = metric_contacts.pk
)
WHERE (started_us, pk) IN (SELECT started_us, pk FROM temp.next_repeat_changes)
"""
# The rows a write may change (see above), and all of them when the table was empty before it.
TOUCHED_ROWS = (
    "temp.touched_customers AS t CROSS JOIN contacts AS c ON c.customer_id = t.customer_id "
    "WHERE c.started_us BETWEEN t.from_us AND t.until_us"
)
ALL_ROWS = "contacts AS c"
_COPY_ORDER = {
    "slack_links": "slack_user_id",
    "subscriptions": "id",
    "alert_rules": "id",
    "outbox": "created_us, rowid",
    "agent_roster": "agent",
    "agent_platform_ids": "platform, platform_id",
}
# A contact with the derived next repeat of its candidate row (None for one the metrics do not count).
_CONTACTS_WITH_NEXT_REPEAT = (
    "SELECT c.*, m.next_repeat_us FROM contacts AS c "
    "LEFT JOIN metric_contacts AS m ON m.started_us = c.started_us AND m.pk = c.pk"
)


class SQLiteContactStore:
    """Contacts in one SQLite file: WAL, a busy timeout, one writer at a time, a fixed pool of readers."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 10_000,
        readers: int = DEFAULT_READERS,
        reader_wait_seconds: float = READER_WAIT_SECONDS,
    ):
        """Open (creating and migrating if needed) the file at ``path``, with at most ``readers`` reader
        connections (``SQLITE_READERS``; a read waits up to ``reader_wait_seconds`` for one). A file that cannot be used (damaged, not SQLite, read-only, a
        directory) raises ``StoreUnavailable`` naming it."""
        self.path = Path(path)
        self._readers = SQLiteReaders(self._connect_reader, readers, reader_wait_seconds, self.path)
        try:
            self._open(synchronous, busy_timeout_ms)
        except sqlite3.Error as problem:
            if (unavailable := explain(problem, self.path)) is not None:
                raise unavailable from None
            raise
        except OSError as problem:  # the directory for it cannot be made
            raise StoreUnavailable(f"cannot create the database {self.path}: {problem.strerror or problem}") from None

    def _open(self, synchronous: str, busy_timeout_ms: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._write_lock = threading.RLock()
        self._refresh_lock = threading.Lock()  # one rollup refresh at a time (see refresh_rollups)
        self._rollup_cache = RollupCache()  # decoded metric rollups (exact: see the class)
        self._raws = RawCodec()  # long raw records compressed (see sqlite_raw)
        self._roster: tuple[int, list[RosterEntry]] | None = None  # (version, entries) last read (see roster)
        self._writer = self._connect(check_same_thread=False)
        # The writer sorts whole imports (index builds): its temporary data must spill to disk, not grow RAM.
        # Its cache also bounds the sorter's memory; 32 MiB kept a 1M-contact import under 300 MB in all.
        # A write known to be small keeps it in memory instead (see _temp_store_for).
        self._writer_temp_store = "FILE"
        self._writer.execute("PRAGMA temp_store = FILE")
        self._writer.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        self._writer.execute(f"PRAGMA wal_autocheckpoint = {WAL_CAP_PAGES}")
        self._writer.execute(f"PRAGMA journal_size_limit = {WAL_CAP_PAGES * PAGE_SIZE}")  # WAL bytes kept
        db = Database(self._writer)
        with self._write_lock:
            applied = [migration.name for migration in migrations.applied(db)]
            if (newer := newer_schema(str(self.path), applied, known_migrations())) is not None:
                raise newer
            migrations.apply(db)
        self._create_scratch_tables()
        self._database_file = DatabaseFile(str(self.path))
        try:
            self._checkpointer = SQLiteCheckpointer(
                self._connect_checkpointer, self._database_file.sync, CHECKPOINT_INTERVAL_SECONDS, WAL_RESTART_PAGES
            )
        except BaseException:  # no store: nothing else would ever close the descriptor
            self._writer.close()
            self._database_file.close()  # (after the connection: see DatabaseFile)
            raise

    def _create_scratch_tables(self) -> None:
        """The writer's temporary tables of the derive step (SQLiteBulkWriter.finish)."""
        self._writer.execute(
            "CREATE TEMP TABLE IF NOT EXISTS touched_customers "
            "(customer_id TEXT PRIMARY KEY, since_us INTEGER NOT NULL, until_us INTEGER NOT NULL, from_us INTEGER)"
        )
        self._writer.execute(
            "CREATE TEMP TABLE IF NOT EXISTS next_repeat_changes "
            "(started_us INTEGER, pk INTEGER, next_repeat_us INTEGER, PRIMARY KEY (started_us, pk)) WITHOUT ROWID"
        )

    def _temp_store_for(self, expected_rows: int) -> None:
        """Before a write transaction: its temporary data in memory when it is known to be small (a webhook group),
        else in files (an import's sorts must not grow RAM).

        Why: with temp_store FILE every multi-row INSERT of a small write spilled its statement journal (SQLite
        keeps 64 KiB in memory) to a temporary file, and the derive step's temporary tables went through one too:
        the writer's SQL took 179 ms for 2,000 CTRs, 149 ms in memory (microbench, 100k-contact store). Changing
        the setting drops the temporary tables (empty between writes), so they are made again."""
        wanted = "MEMORY" if 0 < expected_rows < BULK_LOAD_MIN_ROWS else "FILE"
        if wanted != self._writer_temp_store and not self._writer.in_transaction:
            self._writer.execute(f"PRAGMA temp_store = {wanted}")
            self._create_scratch_tables()
            self._writer_temp_store = wanted

    def _connect(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        """A connection set up as every connection of the store is (reader or writer)."""
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,  # explicit BEGIN/COMMIT only
            check_same_thread=check_same_thread,
        )
        # PAGE_SIZE applies to new files only and must come before WAL.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        # Lent to one thread at a time by the pool (never shared at once), so not tied to the thread that made it.
        conn = self._connect(check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _connect_checkpointer(self) -> sqlite3.Connection:
        conn = self._connect(check_same_thread=False)  # made here, used by the checkpoint thread only
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # (it checkpoints on purpose, never as a side effect)
        return conn

    def _reader(self) -> AbstractContextManager[sqlite3.Connection]:
        """A reader connection of the pool for the ``with`` block (this thread's own until the block ends)."""
        return self._readers.connection()

    @property
    def reader_connections(self) -> int:
        """Reader connections open now (at most ``SQLITE_READERS``; what the tests of the pool watch)."""
        return self._readers.opened

    def close(self) -> None:
        self._checkpointer.close()  # first: the last connection to close checkpoints and removes the WAL
        self._readers.close()
        self._writer.close()
        self._database_file.close()  # last: closing it drops this process's locks on the file (see DatabaseFile)

    # --- writing -------------------------------------------------------------------------------------

    def upsert(self, contacts: Iterable[Contact]) -> UpsertCounts:
        with self.bulk(len(contacts) if isinstance(contacts, Sized) else 0) as writer:
            add_all(writer, contacts)
        return writer.counts

    @contextmanager
    def bulk(self, expected_rows: int = 0) -> Iterator[SQLiteBulkWriter]:
        with self._write_lock:
            self._temp_store_for(expected_rows)
            try:
                with immediate_transaction(self._writer) as conn:
                    conn.execute("DELETE FROM temp.touched_customers")
                    writer = SQLiteBulkWriter(conn, self._raws)
                    writer.defer_indexes_for(expected_rows)
                    yield writer
                    scope = writer.finish()
                    sqlite_rollups.mark_dirty(conn, scope)  # metric rollups: days to rebuild (see sqlite_rollups)
                    conn.execute(
                        "UPDATE store_stats SET value = value + ? WHERE name = 'contacts'", (writer.counts.inserted,)
                    )
            finally:
                self._writer.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")  # (after a bulk load's larger one)
                self._writer.execute("PRAGMA threads = 0")  # (and its sorting threads)
            self._checkpointer.restart_if_due(self._writer)

    def raw_packer(self, samples: Sequence[tuple[str, str]]) -> RawPacker | None:
        """What an import's reader processes compress long raws with (see ``sqlite_raw``): the store's newest
        dictionary, or one trained from ``samples`` (raw, customer: the head of the file), which the write that
        gets the first chunk it packed stores. None: raws go to the writer as text."""
        with self._reader() as conn:
            return self._raws.packer(conn, samples)

    def purge_contacts_before(self, cutoff_us: int) -> int:
        # In transactions of PURGE_BATCH contacts, so webhook batches get the lock in between. Deleting the
        # oldest contacts changes no derived value of the others (a next repeat always starts later), and the
        # delete triggers remove their candidate rows and mark their rollup days.
        return self._delete_in_batches("started_us < ?", (cutoff_us,))

    def forget_customer(self, customer_id: str) -> int:
        # Every contact of the customer goes, so no next repeat of theirs is left to correct; other customers'
        # contacts are never each other's repeats.
        return self._delete_in_batches("customer_id = ?", (customer_id,))

    def _delete_in_batches(self, where: str, params: tuple[Any, ...]) -> int:
        deleted = 0
        while True:
            with self._write_lock, immediate_transaction(self._writer) as conn:
                pks = [
                    (pk,)
                    for (pk,) in conn.execute(f"SELECT pk FROM contacts WHERE {where} LIMIT ?", (*params, PURGE_BATCH))
                ]
                conn.executemany("DELETE FROM contacts WHERE pk = ?", pks)
                conn.execute("UPDATE store_stats SET value = value - ? WHERE name = 'contacts'", (len(pks),))
            deleted += len(pks)
            if len(pks) < PURGE_BATCH:
                return deleted

    def backup(self, target: str | Path) -> None:
        """A consistent copy of the live database at ``target`` (SQLite's online backup: writers go on)."""
        destination = sqlite3.connect(target)
        try:
            # In one step: one read snapshot for the whole copy (in steps, a write in between would restart it).
            with self._reader() as conn:
                conn.backup(destination)
            destination.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
        finally:
            destination.close()

    # --- reading -------------------------------------------------------------------------------------

    def count_contacts(self) -> int:
        with self._reader() as conn:
            row = conn.execute("SELECT value FROM store_stats WHERE name = 'contacts'").fetchone()
        return int(row[0])

    def data_since_us(self) -> int | None:
        with self._reader() as conn:
            row = conn.execute("SELECT min(started_us) FROM metric_contacts").fetchone()
        return None if row[0] is None else int(row[0])

    def quick_returns(self, spec: QuickReturns) -> list[int]:
        with self._reader() as conn:
            return sqlite_metrics.quick_returns(conn, spec)

    def get_contact(self, source: str, contact_id: str) -> dict[str, Any] | None:
        with self._reader() as conn:
            cursor = conn.execute(f"{_CONTACTS_WITH_NEXT_REPEAT} WHERE c.source = ? AND c.id = ?", (source, contact_id))
            row, names = cursor.fetchone(), [d[0] for d in cursor.description]
            cursor.close()  # the statement is done before the connection goes back to the pool
            if row is None:
                return None
            contact = dict(zip(names, row, strict=True))
            contact["raw"] = self._raws.unpack(conn, contact["raw"])
        return contact

    # --- Slack links and dimension values (SQL in sqlite_links.py) ------------------------------------

    def dimension_values(self, dimension: str) -> list[str]:
        with self._reader() as conn:
            return sqlite_links.dimension_values(conn, dimension)

    def link_agent(self, slack_user_id: str, agent: str, linked_by: str | None = None) -> None:
        with self._write_lock:
            sqlite_links.link(self._writer, slack_user_id, agent, linked_by)

    def unlink_agent(self, slack_user_id: str) -> bool:
        with self._write_lock:
            return sqlite_links.unlink(self._writer, slack_user_id)

    def agent_for_user(self, slack_user_id: str) -> str | None:
        with self._reader() as conn:
            return sqlite_links.agent_for_user(conn, slack_user_id)

    def list_agent_links(self) -> list[AgentLink]:
        with self._reader() as conn:
            return sqlite_links.list_links(conn)

    # --- the agent roster (SQL in sqlite_roster.py) ---------------------------------------------------------

    def replace_roster(self, entries: Sequence[RosterEntry]) -> int:
        with self._write_lock, immediate_transaction(self._writer) as conn:
            return sqlite_roster.replace(conn, entries)

    def roster(self) -> list[RosterEntry]:
        """The roster; the same list as last time while it has not changed (its version: ``sqlite_roster``), so
        that each webhook request can ask for it. Callers must not change the list."""
        with self._reader() as conn:
            version = sqlite_roster.version(conn)
            cached = self._roster
            if cached is not None and cached[0] == version:
                return cached[1]
            with read_snapshot(conn):  # (the version of the entries read)
                version, entries = sqlite_roster.version(conn), sqlite_roster.entries(conn)
        self._roster = (version, entries)
        return entries

    def unknown_agents(self, sources: Sequence[str]) -> list[tuple[str, str, int]]:
        with self._reader() as conn:
            return sqlite_roster.unknown_agents(conn, sources)

    # --- scheduler: subscriptions, alert rules, outbox (SQL in sqlite_schedules.py) ---------------------

    def scheduler_lease(self) -> SQLiteSchedulerLease:
        return SQLiteSchedulerLease(self.path)

    def schedules(self) -> sqlite_schedules.SQLiteSchedules:
        return sqlite_schedules.SQLiteSchedules(self._writer, self._write_lock, self._reader)

    def outbox(self) -> sqlite_schedules.SQLiteSchedules:
        return self.schedules()

    # --- db copy --------------------------------------------------------------------------------------

    def export_contacts(self) -> Iterator[Contact]:
        cursor = self._connect().execute(f"SELECT {', '.join(_WRITE_COLUMNS)} FROM contacts ORDER BY pk")
        try:
            for row in cursor:
                yield Contact._make(row)._replace(
                    escalated=bool(row[_ESCALATED]),
                    resolved=None if row[_RESOLVED] is None else bool(row[_RESOLVED]),
                    raw=self._raws.unpack(cursor.connection, row[_RAW]),
                )
        finally:
            cursor.connection.close()

    def export_table(self, table: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        columns = COPIED_TABLES[table]
        order = _COPY_ORDER[table]
        with self._reader() as conn:
            rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}").fetchall()
        return columns, rows

    def replace_tables(self, tables: Sequence[TableRows]) -> None:
        with self._write_lock, immediate_transaction(self._writer) as conn:
            for table, columns, _ in reversed(tables):  # emptied last table first: a row may name an earlier one's
                if tuple(columns) != COPIED_TABLES[table]:
                    raise ValueError(f"{table}: columns {columns} are not {COPIED_TABLES[table]}")
                conn.execute(f"DELETE FROM {table}")
            for table, columns, rows in tables:
                marks = ", ".join("?" * len(columns))
                conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            sqlite_roster.changed(conn)  # (the roster tables may be among them)

    # --- metrics (SQL in sqlite_metrics.py) ----------------------------------------------------------

    # --- metrics (SQL in sqlite_metrics.py, rollups in sqlite_rollups.py) --------------------------------

    @contextmanager
    def metric_reader(
        self, zone: tzinfo, *, refresh_days: int = REFRESH_ON_READ_DAYS
    ) -> Iterator[sqlite_metrics.SQLiteMetricReader]:
        """One read snapshot for one metric question (rollups and contacts seen at the same instant).

        First rebuilds up to ``refresh_days`` stale rollup days, only if no write is in progress:
        a question never waits for an import.
        """
        if refresh_days:
            self._refresh_if_free(zone, refresh_days)
        with self._reader() as conn, read_snapshot(conn):
            yield sqlite_metrics.SQLiteMetricReader(conn, zone, self._rollup_cache)

    def why_rows(self, query: WhyQuery) -> Iterator[WhyRow]:
        with self._reader() as conn, read_snapshot(conn):
            yield from sqlite_why.why_rows(conn, query)

    def escalation_counts(self, query: WhyQuery) -> tuple[int, int]:
        with self._reader() as conn:
            return sqlite_why.escalation_counts(conn, query)

    def refresh_rollups(self, zone: tzinfo, max_days: int | None = None) -> int:
        """Rebuild stale metric rollups (all, or the ``max_days`` most recent stale UTC days) for ``zone``;
        returns the number of UTC days rolled up (a day a write marks again meanwhile stays stale and is not
        counted), as on PostgreSQL. For the scheduler, and after a big import.

        REFRESH_BATCH_DAYS days at a time, each rolled up from short read snapshots while writes go on (on 10M
        contacts a day takes half a second to over a second under load) and installed by a short write transaction: a
        webhook batch never waits for a rollup to be worked out. A day written meanwhile stays stale (and is
        counted from contacts) until the next refresh. Each day is taken once per call, newest first. Only a change
        of BOT_TIMEZONE, which makes every day stale, writes for long (once)."""
        taken = rolled_up = 0  # UTC days built (the bound), and those of them rolled up
        before: int | None = None  # the next batch: dirty days before the oldest of the previous one
        with self._refresh_lock:
            while max_days is None or taken < max_days:
                batch = REFRESH_BATCH_DAYS if max_days is None else min(REFRESH_BATCH_DAYS, max_days - taken)
                built = self._build_rollups(zone, batch, before)
                if built is None:  # rollups of another zone: start over, every day stale
                    with self._write_lock, immediate_transaction(self._writer) as conn:
                        sqlite_rollups.reset_zone(conn, zone)
                    continue
                with self._write_lock, immediate_transaction(self._writer) as conn:
                    cleared = sqlite_rollups.install(conn, built)
                if cleared is None:  # another process refreshed since the build began: build these days again
                    continue
                taken += len(built.marks)
                rolled_up += cleared
                if len(built.marks) < batch:
                    return rolled_up
                before = built.marks[-1][0]
                time.sleep(REFRESH_PAUSE_SECONDS)  # (webhook parsing gets the GIL for a moment)
        return rolled_up

    def _build_rollups(
        self, zone: tzinfo, max_days: int, before_utc_day: int | None = None
    ) -> sqlite_rollups.BuiltRollups | None:
        """``sqlite_rollups.build`` on a reader (no lock of the store held; short read snapshots, see there)."""
        with self._reader() as conn:
            return sqlite_rollups.build(conn, zone, max_days, before_utc_day)

    def _refresh_if_free(self, zone: tzinfo, max_days: int) -> None:
        """A question's own refresh: only if no other refresh runs and, to install, no write is in progress (a
        question never waits for an import; it answers stale days from contacts instead)."""
        with self._reader() as reader:
            stale = sqlite_rollups.stale_days(reader, zone)
        if stale == 0 or not self._refresh_lock.acquire(blocking=False):
            return
        try:
            if not self._write_lock.acquire(blocking=False):  # a write in progress (an import?): not now
                return
            self._write_lock.release()
            built = self._build_rollups(zone, max_days)
            if not self._write_lock.acquire(blocking=False):
                return
            conn = self._writer
            try:
                conn.execute("PRAGMA busy_timeout = 0")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:  # another process is writing: answer from contacts instead
                    return
                try:
                    if built is None:
                        sqlite_rollups.reset_zone(conn, zone)
                    else:
                        sqlite_rollups.install(conn, built)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                self._write_lock.release()
        finally:
            self._refresh_lock.release()


def _in_key_order(values: list[Any]) -> list[Any]:
    """The rows (values one after another) in (source, id) order, rows of one key in the order given.

    Why: the (source, id) index takes each row, and platform ids are random (UUIDs): rows in arrival order each
    went to another leaf of an index larger than the cache. Sorted, a chunk goes through it once, in order
    (1M bench CTRs: ~8 us CPU a row less). Stable, so the first of a key's rows is still the one inserted.
    """
    ids = values[_ID::_WIDTH]
    sources = values[_SOURCE::_WIDTH]
    keys: list[Any] = ids if sources.count(sources[0]) == len(sources) else list(zip(sources, ids, strict=True))
    if all(map(le, keys, islice(keys, 1, None))):  # sorted by the import's reader process (stops at the first pair not)
        return values
    order = sorted(range(len(ids)), key=keys.__getitem__)
    ordered: list[Any] = [None] * len(values)
    for column in range(_WIDTH):
        given = values[column::_WIDTH]
        ordered[column::_WIDTH] = [given[i] for i in order]
    return ordered


class SQLiteBulkWriter:
    """Writes chunks inside the transaction opened by ``SQLiteContactStore.bulk``.

    Fast path: a chunk is inserted with ``ON CONFLICT DO NOTHING``; when every row got a new primary key
    (pk values are consecutive within the transaction) the chunk was all new and nothing else is read.
    Otherwise the rows that were not inserted are replayed in order against their stored versions, which
    keeps the counts sequential (a key repeated in one batch is inserted, then updated or unchanged).
    """

    def __init__(self, conn: sqlite3.Connection, raws: RawCodec):
        self._conn = conn
        self._raws = raws
        self.counts = UpsertCounts()
        self._max_pk: int = conn.execute("SELECT coalesce(max(pk), 0) FROM contacts").fetchone()[0]
        self._first_pk = self._max_pk  # rows above it were inserted by this transaction
        self._was_empty = self._max_pk == 0
        self._received_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self._deferred_indexes: list[tuple[str, str, str]] = []  # (table, name, sql)
        self._keyless = False  # an initial load without the key index (see defer_indexes_for)
        self._adopted: set[int] = set()  # the dictionaries of the RawPackers whose chunks this write took
        self._updated_own_rows = False  # a row this transaction inserted was updated by it (see finish)

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection of the write transaction (what SQLite-specific tests inspect inside it)."""
        return self._conn

    def defer_indexes_for(self, more_rows: int) -> None:
        """Called with about how many rows will follow in this transaction (``ContactStore.bulk``'s hint).

        A load at least as large as the table it goes into (and at least BULK_LOAD_MIN_ROWS) drops the
        secondary indexes of ``contacts`` and ``metric_contacts`` now and builds them once at the end (a
        sort), which is several times cheaper than updating each index row by row. The drop is part of the
        transaction: a rollback restores them, and readers keep seeing the indexed committed data meanwhile.

        Into an empty store the key index (KEY_INDEX) goes too: every row is then appended as it comes, and a
        key that comes more than once is settled at the end (``_build_key_index``). Platform ids are random
        (UUIDs), so each row's key went to another leaf of an index larger than the cache: 1M CTRs took 16.1 s
        of the writer's CPU to add with it and 9.4 s without, and its build at the end 1.6 s. A store that has
        rows keeps it: each row's conflict check needs it (and one migrated with contacts has no such index).
        """
        if self._deferred_indexes or more_rows < BULK_LOAD_MIN_ROWS:
            return
        existing = self._conn.execute("SELECT value FROM store_stats WHERE name = 'contacts'").fetchone()[0]
        if more_rows < existing:
            return
        self._deferred_indexes = [
            (table, name, sql)
            for table, name, sql in self._conn.execute(
                "SELECT tbl_name, name, sql FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name IN ('contacts', 'metric_contacts') AND sql IS NOT NULL"
            )
            if name != KEY_INDEX or self._was_empty
        ]
        for _, name, _ in self._deferred_indexes:
            self._conn.execute(f'DROP INDEX "{name}"')
        self._keyless = any(name == KEY_INDEX for _, name, _ in self._deferred_indexes)
        if not self._keyless:  # the key index takes every row: a larger cache for it (see BULK_LOAD_CACHE_KIB)
            self._conn.execute(f"PRAGMA cache_size = -{BULK_LOAD_CACHE_KIB}")

    def rebuild_indexes(self, table: str) -> None:
        """Recreate the indexes of ``table`` dropped by ``defer_indexes_for``."""
        for _, _, sql in (deferred for deferred in self._deferred_indexes if deferred[0] == table):
            self._conn.execute(sql)
        self._deferred_indexes = [deferred for deferred in self._deferred_indexes if deferred[0] != table]

    def finish(self) -> str:
        """Bring the derived data up to date (and the deferred indexes back) before the commit.

        Returns the SQL source (``TOUCHED_ROWS`` or ``ALL_ROWS``) of the rows the write may have changed.
        """
        conn = self._conn
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        if self._deferred_indexes:  # whole-table sorts follow
            conn.execute(f"PRAGMA threads = {BULK_SORT_THREADS}")
        if self._keyless:
            self._build_key_index()  # (settling keys a keyless load added twice updates its rows)
        self.rebuild_indexes("contacts")  # the customer index answers every next repeat below
        conn.execute(_insert_metric_contacts_sql(self._updated_own_rows), (self._first_pk,))
        self.rebuild_indexes("metric_contacts")
        if self._was_empty:  # every row is new, and got its next repeat as it was inserted
            return ALL_ROWS
        # The customers of the rows inserted by this transaction, set-based (a temp-table insert per row
        # cost 5 us a row once temp_store is FILE). NOT INDEXED: a pk range, never a customer index scan.
        conn.execute(_TOUCHED_BY_INSERTS_SQL, (self._first_pk,))
        conn.execute(_TOUCHED_FROM_SQL)
        conn.execute("DELETE FROM temp.next_repeat_changes")
        conn.execute(_NEXT_REPEAT_CHANGES_SQL, (self._first_pk,))
        conn.execute(_APPLY_NEXT_REPEAT_SQL)
        conn.execute("DELETE FROM temp.next_repeat_changes")
        return TOUCHED_ROWS

    def _build_key_index(self) -> None:
        """The key index of a keyless load, built at the end (a sort): first as if no key came twice (the usual
        file), else once the keys that did are settled (``_settle_repeated_keys``)."""
        (sql,) = (sql for _, name, sql in self._deferred_indexes if name == KEY_INDEX)
        try:
            self._conn.execute(sql)
        except sqlite3.IntegrityError:  # (the failed statement is undone; the transaction goes on)
            self._settle_repeated_keys()
            self._updated_own_rows = True  # (its updates gave their rows candidate rows already: see finish)
            self._conn.execute(sql)
        self._deferred_indexes = [deferred for deferred in self._deferred_indexes if deferred[1] != KEY_INDEX]
        self._keyless = False

    def _settle_repeated_keys(self) -> None:
        """Leave each key that a keyless load added more than once as the keyed path leaves it: one row, the first
        one's (its pk), holding the version that applying the others after it in order keeps (the same raw is
        unchanged, an older ``updated_us`` is stale, anything else an update), with the counts it makes.

        The repeated keys' pks go into a temporary table (on disk, as the writer's temporary data goes during an
        import) and are settled a page of keys at a time: memory stays bounded by a page, however many keys a file
        repeats (every CTR of a Connect export twice: 500,000 keys held at once took 88 MiB)."""
        conn = self._conn
        conn.execute("DROP TABLE IF EXISTS temp.repeated_keys")
        conn.execute(
            "CREATE TEMP TABLE repeated_keys AS SELECT group_concat(pk) AS pks FROM contacts WHERE pk > ? "
            "GROUP BY source, id HAVING count(*) > 1",
            (self._first_pk,),
        )
        after = 0
        while page := conn.execute(
            "SELECT rowid, pks FROM temp.repeated_keys WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, SETTLE_ROWS // 2),
        ).fetchall():
            after = page[-1][0]
            self._settle_keys([sorted(map(int, pks.split(","))) for _, pks in page])
        conn.execute("DROP TABLE temp.repeated_keys")

    def _settle_keys(self, groups: list[list[int]]) -> None:
        """Settle the keys whose rows are ``groups`` (each key's pks, in order). Their rows are read SETTLE_ROWS
        at a time, each key's versions folded into the one it keeps as they come (one key many times included)."""
        conn, counts = self._conn, self.counts
        key_of = {pk: key for key, group in enumerate(groups) for pk in group}
        kept: list[tuple[Any, ...] | None] = [None] * len(groups)
        changed = [False] * len(groups)
        pks = [pk for group in groups for pk in group]
        firsts = {group[0] for group in groups}  # the rows that stay
        for part in (pks[i : i + SETTLE_ROWS] for i in range(0, len(pks), SETTLE_ROWS)):
            select = f"SELECT pk, {', '.join(_WRITE_COLUMNS)} FROM contacts WHERE pk IN ({','.join('?' * len(part))})"
            rows = {row[0]: row[1:] for row in conn.execute(select, part)}
            for pk in part:
                key, row = key_of[pk], rows[pk]
                version = kept[key]
                if version is None:  # the key's first row: it stays, with the version kept
                    kept[key] = row
                elif row[_RAW] == version[_RAW] or self._raws.unpack(conn, row[_RAW]) == self._raws.unpack(
                    conn, version[_RAW]
                ):
                    counts.unchanged += 1
                elif version[_UPDATED] is not None and row[_UPDATED] is not None and row[_UPDATED] < version[_UPDATED]:
                    counts.stale += 1
                else:
                    counts.updated += 1
                    kept[key], changed[key] = row, True
            conn.executemany("DELETE FROM contacts WHERE pk = ?", ((pk,) for pk in part if pk not in firsts))
        conn.executemany(
            _SETTLE_SQL,
            (
                [*(version[i] for i in _SETTLED), group[0]]
                for group, version, was_changed in zip(groups, kept, changed, strict=True)
                if was_changed and version is not None
            ),
        )
        counts.inserted -= len(pks) - len(groups)

    def add(self, contacts: Sequence[Contact]) -> None:
        """Write a chunk (Contacts, plain tuples in Contact field order, or ``PackedContacts``)."""
        if isinstance(contacts, PackedContacts):
            if (packer := contacts.packer) is not None:
                if not isinstance(packer, RawPacker):
                    raise TypeError(f"raws packed by {type(packer).__name__}, not by this store's raw_packer")
                if packer.dictionary_id not in self._adopted:
                    self._raws.adopt(self._conn, packer)
                    self._adopted.add(packer.dictionary_id)
            self._add_flat(contacts.values, packed=packer is not None)
        elif contacts:
            self._add_flat(list(chain.from_iterable(contacts)), contacts)

    def _add_flat(self, values: list[Any], contacts: Sequence[Contact] | None = None, *, packed: bool = False) -> None:
        """Write a chunk given as one list: the rows' values one after another, in Contact field order
        (the fast path: multi-row INSERTs take the list as it is). ``contacts`` are the same rows, when the
        caller has them; ``packed``: the raws are already as stored (a RawPacker's)."""
        count = len(values) // _WIDTH
        if not count:
            return
        conn = self._conn
        first_pk = self._max_pk
        keyed = not self._keyless
        if keyed:  # (a keyless load appends rows in any order)
            values = _in_key_order(values)
        valid = keyed and _surely_valid(values)
        stored = values if packed else self._packed(values)
        nulls = _null_columns(stored, count)
        stored = _bindable(stored, nulls)  # (the same values to SQLite: the database judges them as before)
        step = ROWS_PER_INSERT * (_WIDTH - len(nulls))
        whole = len(stored) - len(stored) % step
        if whole:
            received_at = [self._received_at]
            conn.executemany(
                _insert_new_sql(ROWS_PER_INSERT, keyed, valid, nulls),
                (received_at + stored[i : i + step] for i in range(0, whole, step)),
            )
        if whole < len(stored):
            conn.execute(
                _insert_new_sql(count % ROWS_PER_INSERT, keyed, valid, nulls), [self._received_at, *stored[whole:]]
            )
        self._max_pk = conn.execute("SELECT coalesce(max(pk), 0) FROM contacts").fetchone()[0]
        inserted = self._max_pk - first_pk
        self.counts.inserted += inserted
        if inserted < count:
            if packed:  # compared and replayed as text
                values = values.copy()
                values[_RAW::_WIDTH] = [self._raws.unpack(conn, raw) for raw in values[_RAW::_WIDTH]]
            if contacts is None:
                contacts = [tuple(values[i : i + _WIDTH]) for i in range(0, len(values), _WIDTH)]  # type: ignore[misc]
            # Customers of inserted rows are collected in finish(); an update touches its old and new customer,
            # between its old and new start.
            touched: dict[str, tuple[int, int]] = {}
            self._replay_conflicts(contacts, first_pk, touched)
            conn.executemany(_TOUCHED_BY_UPDATES_SQL, ((k, since, until) for k, (since, until) in touched.items()))

    def _replay_conflicts(
        self, contacts: Sequence[Contact], first_pk: int, touched: dict[str, tuple[int, int]]
    ) -> None:
        """Apply, in order, the rows of a chunk that were not inserted: as updates, unchanged, or stale (an
        ``updated_us`` older than the stored one: the store keeps the newer version)."""
        new_keys = set(self._conn.execute("SELECT source, id FROM contacts WHERE pk > ?", (first_pk,)).fetchall())
        pending: list[Contact] = []
        for contact in contacts:
            key = (contact[_SOURCE], contact[_ID])
            if key in new_keys:
                new_keys.discard(key)  # its first occurrence in the chunk is the inserted one
            else:
                pending.append(contact)
        known = self._stored_versions(pending)
        changed: list[Contact] = []
        counts = self.counts
        for contact in pending:
            key = (contact[_SOURCE], contact[_ID])
            before = known[key]
            if before[2] == contact[_RAW]:
                counts.unchanged += 1
                continue
            if before[3] is not None and contact[_UPDATED] is not None and contact[_UPDATED] < before[3]:
                counts.stale += 1
                continue
            counts.updated += 1
            for customer, started in ((before[0], before[1]), (contact[_CUSTOMER], contact[_STARTED])):
                since, until = touched.get(customer, (started, started))
                touched[customer] = (min(since, started), max(until, started))
            if before[4] > self._first_pk:  # its candidate row is made now, by the update's trigger (see finish)
                self._updated_own_rows = True
            known[key] = (contact[_CUSTOMER], contact[_STARTED], contact[_RAW], contact[_UPDATED], before[4])
            changed.append(contact)
        if changed:
            values = self._packed(list(chain.from_iterable(changed)))
            self._conn.executemany(_UPSERT_SQL, (values[i : i + _WIDTH] for i in range(0, len(values), _WIDTH)))

    def _packed(self, values: list[Any]) -> list[Any]:
        """Rows' values (one after another) as stored: long raws compressed (``sqlite_raw``)."""
        raws = self._raws.pack(self._conn, values[_RAW::_WIDTH], values[_CUSTOMER::_WIDTH])
        if raws is None:
            return values
        stored = values.copy()
        stored[_RAW::_WIDTH] = raws
        return stored

    def _stored_versions(
        self, contacts: Sequence[Contact]
    ) -> dict[tuple[str, str], tuple[str, int, str, int | None, int]]:
        """(source, id) -> (customer_id, started_us, raw, updated_us, pk) of the stored versions of these contacts."""
        ids_by_source: dict[str, list[str]] = {}
        for contact in contacts:
            ids_by_source.setdefault(contact[_SOURCE], []).append(contact[_ID])
        known: dict[tuple[str, str], tuple[str, int, str, int | None, int]] = {}
        for source, ids in ids_by_source.items():
            for start in range(0, len(ids), 30_000):
                part = ids[start : start + 30_000]
                rows = self._conn.execute(
                    f"SELECT id, customer_id, started_us, raw, updated_us, pk FROM contacts "
                    f"WHERE source = ? AND id IN ({','.join('?' * len(part))})",
                    (source, *part),
                )
                for contact_id, customer_id, started_us, raw, updated_us, pk in rows:
                    known[(source, contact_id)] = (
                        customer_id,
                        started_us,
                        self._raws.unpack(self._conn, raw),
                        updated_us,
                        pk,
                    )
        return known

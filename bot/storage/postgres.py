"""The PostgreSQL contact store: any number of processes share one database.

Writes are concurrent. A write locks the contact rows it changes (in key order), then, at its end, takes the
store's *derive lock* (a transaction-scoped advisory lock) to bring the candidates (``metric_contacts``) and
their derived next repeats up to date, and commits while holding it. Only that short last step is serialised:
every derive step starts after the previous one committed, so it sees every contact written before it (READ
COMMITTED), and since no transaction holding the derive lock ever waits for a row lock, the lock cannot deadlock.
A small write adds the candidates of the contacts it inserts with them, before it takes the lock, with no next
repeat; its derive step sets those that have one with the rest (new rows that no other transaction sees or waits
for).
The candidates with a repeat within a day of their end (the quick returns) are copied into a table of their own
by the same statements that write the candidates, so that no index of the candidates holds a next repeat and
setting one is a HOT update (``_QUICK_COLUMNS``).
Two writes of the same keys in crossing order can deadlock on their rows; PostgreSQL then aborts one, and
``upsert`` runs it again.

The commit under the derive lock does not wait for the disk; the write is made durable right after, outside
the lock, before ``upsert`` (or ``bulk``) returns: a write is acknowledged only once it is on disk.

Why the derived data is exact under concurrent writers of one customer: a write changes the next repeat only of
its touched customers' contacts between the last repeatable start before its earliest change (``from_us``) and
its latest change; both are worked out under the derive lock, over every committed contact, so a later write's
derive step fixes what an earlier one could not yet see.

A purge (RETENTION_DAYS) or an erasure (``contacts forget``) is a write that deletes: in batches, each deletes its
rows (locking them, like a write), notes what went, and ends with the same derive step. A write that worked out a
next repeat from a contact being deleted, and committed after the delete ran, is corrected by that step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Final, NamedTuple, TypeVar, cast

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from bot.roster import RosterEntry
from bot.storage import (
    BOOLEAN_COLUMNS,
    COPIED_TABLES,
    AgentLink,
    PackedContacts,
    TableRows,
    UpsertCounts,
    add_all,
    counted_add,
    postgres_copy,
    postgres_migrations,
    postgres_rollups,
    postgres_why,
)
from bot.storage.errors import newer_schema
from bot.storage.postgres_copy import COPY_TYPES, HEADER, TRAILER, CopyRowPacker, CopyRows, write_binary_copy
from bot.storage.postgres_load import NO_DISK_WAIT, StagedLoad, drop_leftovers_if_idle, run_builds, staged
from bot.storage.postgres_metrics import QUICK_RETURN, PostgresMetricReader, quick_returns
from bot.storage.postgres_schedules import PostgresSchedules
from bot.storage.rollup_cache import RollupCache
from bot.storage.urls import redact
from metrics.records import Contact
from metrics.why import WhyQuery, WhyRow
from metrics.windows import QuickReturns

log = logging.getLogger("acr_bot.storage")
_T = TypeVar("_T")

REFRESH_ON_READ_DAYS = 1  # stale UTC days a question may roll up first (as on SQLite)
# How long a question's refresh waits for the derive lock to store what it built (a write or two, not a queue).
REFRESH_ON_READ_LOCK_WAIT = "1s"
REFRESH_BATCH_DAYS = 4  # UTC days rolled up from one snapshot (writers' derive steps wait while each is stored)
CONNECT_TIMEOUT_SECONDS = 10
RETRIES = 5  # attempts of one upsert that PostgreSQL aborted (deadlock or serialization failure)
SETTLE_BATCH = 5_000  # rows of keys given twice to a staged load, settled per statement (in memory meanwhile)
SETTLE_FETCH = 1_000  # rows of such keys read per round trip
PURGE_BATCH = 5000  # contacts deleted per transaction by a purge or an erasure (writers wait for no more)
# A write touching more contacts than this works out next repeats over its customers' whole histories in one scan
# instead of reading each customer's changed stretch by index (cheaper for an import, dearer for a webhook batch).
WINDOW_PASS_MIN_ROWS = 20_000
# A load of at least this many contacts, and at least as many as the store holds, builds the secondary indexes
# of the contacts and their candidates at its end (``_PostgresBulkWriter.defer_indexes_for``).
BULK_LOAD_MIN_ROWS = 50_000
BULK_LOAD_LOCK_WAIT = "2s"  # how long a load waits for the tables before it goes row by row instead
# A chunk of at least this many keys is inserted expecting every key to be new (``_insert_new``), in a savepoint
# (two round trips more), at most EXPECT_NEW_SAVEPOINTS times a transaction: a transaction's first 64
# subtransactions are kept in its process's slot, more make every snapshot of every process read pg_subtrans.
EXPECT_NEW_MIN_ROWS = 50
EXPECT_NEW_SAVEPOINTS = 8
# After a chunk that had a stored key (a redelivery, or a platform's updates), a store's next chunks are inserted
# with ON CONFLICT: a plain insert fails at the first stored key, and what it inserted before it is undone.
EXPECT_NEW_PAUSE = 16
_COLUMNS: Final = Contact._fields
_COLUMN_LIST: Final = ", ".join(_COLUMNS)
_RAW: Final = _COLUMNS.index("raw")  # a chunk may hold plain tuples in Contact field order (the import's)
_UPDATED: Final = _COLUMNS.index("updated_us")
_DERIVE_LOCK_KEY: Final = "hashtext('acr-bot derive'), hashtext(current_schema())"
_DERIVE_LOCK: Final = f"SELECT pg_advisory_xact_lock({_DERIVE_LOCK_KEY})"
_TRY_DERIVE_LOCK: Final = f"SELECT pg_try_advisory_xact_lock({_DERIVE_LOCK_KEY})"
_PG_TYPES: Final = {"int4": "INTEGER", "bool": "BOOLEAN", "int8": "BIGINT", "text": "TEXT"}
# The indexes a bulk load may build at its end: every index of the two tables but those of their constraints
# (the primary keys, and (source, id) that the writer looks keys up by).
_SECONDARY_INDEXES: Final = """
SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index AS i
WHERE i.indrelid IN ('contacts'::regclass, 'metric_contacts'::regclass)
    AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid)
ORDER BY 2
"""
_COUNT: Final = "SELECT value FROM store_stats WHERE name = 'contacts'"
# An initial load (into a store with no contacts) copies its rows straight into the contacts table and builds the
# candidates at its end in one pass; the candidates' primary key is built then too (inserted in the window's
# order, not the key's, it cost twice the insert itself).
_EMPTY: Final = "SELECT NOT EXISTS (SELECT FROM contacts)"
_CANDIDATE_KEY: Final = (
    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'metric_contacts'::regclass "
    "AND contype = 'p'"
)
_LOAD_WORK_MEM: Final = "256MB"  # the load's one sort of every contact, in memory (spilled to disk, 2x slower)
# The index builds at the end of a bulk load sort in memory up to this (PostgreSQL's default, 64MB, spills a load
# of 1,000,000 contacts to disk: its builds took 15% longer); a server configured for more keeps its own.
_LOAD_MAINTENANCE_WORK_MEM: Final = (
    "SELECT set_config('maintenance_work_mem', '512MB', true) "
    "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('512MB')"
)
_COPY_CONTACTS: Final = f"COPY {{table}} ({_COLUMN_LIST}, received_at) FROM STDIN (FORMAT BINARY)"
# A transaction with an id that writes WAL (a logical decoding message: no table is written, and replication
# passes it on only to a consumer that asks for messages) and commits with the session's synchronous_commit:
# it returns once the WAL up to its commit is on disk (and on the synchronous standbys, if there are any).
_FLUSH: Final = "BEGIN; SELECT pg_logical_emit_message(true, 'acr-bot', 'flush'); COMMIT"
_SCHEDULER_LOCK: Final = "SELECT pg_try_advisory_lock(hashtext('acr-bot scheduler'), hashtext(current_schema()))"
_TEMP_TABLES: Final = (
    # One chunk of a write, one row per key (the last version given), as COPY delivered it.
    "CREATE TEMP TABLE IF NOT EXISTS incoming ({}) ON COMMIT DELETE ROWS".format(
        ", ".join(f"{column} {_PG_TYPES[kind]}" for column, kind in zip(_COLUMNS, COPY_TYPES, strict=True))
    ),
    # What the write changed: each written contact's customer and start, old and new (for the derive step). With
    # no TOAST table: a commit empties every temporary table's, and builds its index again (~0.2 ms a commit). A
    # table gets none when each of its text columns is kept in line (PLAIN; customer ids are short: ID_MAX_CHARS);
    # PostgreSQL 15 takes no STORAGE in CREATE TABLE, so the column's comes from a shape table, dropped at once.
    # (incoming keeps its TOAST table: a contact's raw record has no size limit.)
    "CREATE TEMP TABLE IF NOT EXISTS written_shape (pk BIGINT, customer_id TEXT, started_us BIGINT)",
    "ALTER TABLE written_shape ALTER COLUMN customer_id SET STORAGE PLAIN",
    "CREATE TEMP TABLE IF NOT EXISTS written (LIKE written_shape INCLUDING STORAGE) ON COMMIT DELETE ROWS",
    "DROP TABLE written_shape",
)
_COPY_INCOMING: Final = f"COPY incoming ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
_DROP_INCOMING: Final = (
    "DELETE FROM incoming AS i USING unnest(%s::text[], %s::text[]) AS k (source, id) "
    "WHERE i.source = k.source AND i.id = k.id"
)
# The stored versions of the given keys (a chunk's keys it did not insert), locked until the commit in the order
# given (key order): one index probe per key.
_LOCK_STORED: Final = """
SELECT s.source, s.id, s.pk, s.customer_id, s.started_us, s.raw, s.updated_us
FROM unnest(%s::text[], %s::text[]) AS k (source, id) CROSS JOIN LATERAL (
    SELECT c.source, c.id, c.pk, c.customer_id, c.started_us, c.raw, c.updated_us FROM contacts AS c
    WHERE c.source = k.source AND c.id = k.id FOR UPDATE
) AS s
"""
# The chunk's new keys inserted (and so locked) in key order and noted for the derive step (``_insert_new``).
_INSERTED: Final = f"""
WITH inserted AS (
    INSERT INTO contacts ({_COLUMN_LIST}, received_at)
    SELECT {_COLUMN_LIST}, %s FROM incoming ORDER BY source, id{{conflict}}
    RETURNING pk, source, id, customer_id, started_us, end_us, direction, tier, escalated, resolved, agent, team,
        queue, channel, reason
), noted AS (
    INSERT INTO written (pk, customer_id, started_us) SELECT pk, customer_id, started_us FROM inserted
){{candidates}}
"""
# Updates: the old customer and start (read while locking) are noted, the new ones by the update itself.
_NOTE_OLD: Final = (
    "INSERT INTO written (pk, customer_id, started_us) SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[])"
)
# A staged load's keys given more than once (``_PostgresBulkWriter._settle``): their rows in the order given.
_REPEATED_KEYS: Final = f"""
SELECT pk, {_COLUMN_LIST} FROM {{table}} WHERE (source, id) IN (
    SELECT source, id FROM {{table}} GROUP BY source, id HAVING count(*) > 1
) ORDER BY source, id, pk
"""
_SETTLE_FINAL: Final = (
    "UPDATE {{table}} AS c SET {sets} FROM incoming AS i WHERE c.pk = ANY(%s) AND i.source = c.source AND i.id = c.id"
).format(sets=", ".join(f"{column} = i.{column}" for column in _COLUMNS if column not in ("source", "id")))
_UPDATE_CHANGED: Final = """
WITH updated AS (
    UPDATE contacts AS c SET {sets}, received_at = %s
    FROM incoming AS i WHERE c.pk = ANY(%s) AND i.source = c.source AND i.id = c.id
    RETURNING c.pk, c.customer_id, c.started_us
)
INSERT INTO written (pk, customer_id, started_us) SELECT pk, customer_id, started_us FROM updated
""".format(sets=", ".join(f"{column} = i.{column}" for column in _COLUMNS if column not in ("source", "id")))
_CANDIDATE: Final = "c.direction = 'inbound' AND c.agent IS NOT NULL"
_METRIC_COLUMNS: Final = (
    "pk, started_us, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel, reason"
)
_MIN_US: Final = -9223372036854775808
# The quick returns (``metrics.windows``: the candidates with a repeat within a day of their end) are copied into
# metric_quick_returns (migration 016), so that no index of metric_contacts holds next_repeat_us and the fix of a
# next repeat is a HOT update (no index entry). Every statement that writes candidates keeps the copy equal to
# ``SELECT ... FROM metric_contacts WHERE {QUICK_RETURN}`` in the same statement (common table expressions): the
# candidates added, dropped, fixed or remapped, and every initial load's. Keyed (started_us, pk): a period is read
# by range, and a row is found again from a candidate's own started_us and pk.
_QUICK_COLUMNS: Final = (
    "started_us, pk, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel, reason"
)
# A small write's statements reach the copies of their few rows by key (as ``_BY_KEY``), whatever the planner
# expects of the table; a large write's join by hash.
_QUICK_BY_KEY: Final = " AND q.started_us = ANY(ARRAY(SELECT started_us FROM {rows}))"


def _quick_added(rows: str) -> str:
    """SQL copying the quick returns among ``rows`` (new candidates, with their columns) into the quick table."""
    return (
        f"INSERT INTO metric_quick_returns ({_QUICK_COLUMNS}) SELECT {_QUICK_COLUMNS} FROM {rows} "
        f"WHERE {QUICK_RETURN} ORDER BY started_us, pk"
    )


def _quick_gone(rows: str, *, by_key: bool) -> str:
    """SQL deleting the copies of ``rows`` (a CTE with started_us and pk of candidates no longer quick returns)."""
    return (
        f"DELETE FROM metric_quick_returns AS q USING {rows} AS g WHERE q.started_us = g.started_us AND q.pk = g.pk"
        + (_QUICK_BY_KEY.format(rows=rows) if by_key else "")
    )


# The candidates of the written contacts go (their copies among the quick returns with them).
_DROP_OLD_CANDIDATES: Final = f"""
WITH dropped AS (
    DELETE FROM metric_contacts AS m USING written AS w WHERE m.pk = w.pk{{by_key}}
    RETURNING m.started_us, m.pk, m.end_us, m.next_repeat_us
), quick_dropped AS (SELECT started_us, pk FROM dropped WHERE {QUICK_RETURN})
{{quick_gone}}
"""
# A small write's derive step reaches the rows it joins in contacts and metric_contacts through their keys, one
# index probe each, whatever the planner makes of its few rows (it takes a CTE for 200 rows and, on a store of
# some ten thousand candidates whose statistics lag, hashed all of metric_contacts for the fix: a sequential scan
# that took 16 of a webhook batch's 56 ms at 28,000 candidates, and grows with the store). A large write's
# derive step joins by hash on purpose (``_DERIVE_HISTORIES``).
_BY_KEY: Final = " AND {row}.pk = ANY(ARRAY(SELECT pk FROM {keys}))"
# The next repeat of each contact of ``rows`` (columns pk, history, started_us, repeatable, after_us; every
# contact of a customer between two instants, ``history`` telling the customers apart): the first repeatable start
# strictly after it among its customer's rows, else ``after_us`` (the customer's first repeatable start after them
# all). A running minimum, latest first: one sort and one pass (a frame from the row onwards would aggregate each
# row's frame again).
_NEXT_REPEATS_OF: Final = """
SELECT pk, started_us, coalesce(min(started_us) FILTER (WHERE repeatable) OVER (
    PARTITION BY history ORDER BY started_us DESC RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
), after_us) AS next_repeat_us
FROM {rows}
"""
# A write can change next repeats only of its touched customers' contacts between the last repeatable start
# before its earliest change (``from_us``) and its latest change (``until_us``); each customer's stretch is read
# by index (LATERAL: a few probes per customer, never a scan of the table), with the first repeatable start
# after it (``after_us``). Each probe is a join (LIMIT 1), not a subquery in the select list, which cost ~1 us a
# contact more to run again per customer; the customers are told apart by a number (sorted by it, the window's
# rows compare integers, not customer ids: ~1 us a contact less). Writes of 1000 new contacts, one writer:
# derive statement 36.1 -> 32.6 us a contact.
_SPAN_ROWS: Final = f"""(
    SELECT c.pk, t.history, c.started_us, c.repeatable, a.after_us
    FROM (SELECT customer_id, min(started_us) AS since_us, max(started_us) AS until_us,
              row_number() OVER () AS history
          FROM written GROUP BY customer_id) AS t
    LEFT JOIN LATERAL (
        SELECT p.started_us AS from_us FROM contacts AS p
        WHERE p.customer_id = t.customer_id AND p.repeatable AND p.started_us < t.since_us
        ORDER BY p.started_us DESC LIMIT 1
    ) AS f ON true
    LEFT JOIN LATERAL (
        SELECT n.started_us AS after_us FROM contacts AS n
        WHERE n.customer_id = t.customer_id AND n.repeatable AND n.started_us > t.until_us
        ORDER BY n.started_us LIMIT 1
    ) AS a ON true
    CROSS JOIN LATERAL (
        SELECT c.pk, c.started_us, c.repeatable FROM contacts AS c
        WHERE c.customer_id = t.customer_id
            AND c.started_us BETWEEN coalesce(f.from_us, {_MIN_US}) AND t.until_us
        OFFSET 0  -- kept a subquery: not flattened into a join that the planner may make a scan of contacts
    ) AS c
) AS span"""
# A large write reads the whole history of each touched customer in one scan instead.
_HISTORY_ROWS: Final = """(
    SELECT c.pk, c.customer_id AS history, c.started_us, c.repeatable, NULL::bigint AS after_us FROM contacts AS c
    WHERE c.customer_id IN (SELECT customer_id FROM written)
) AS history"""
# The written contacts' candidates, with their next repeat; then every other candidate whose next repeat
# changed, fixed (and its day marked for the rollups). ``fresh`` is the next repeats worked out above.
_ADD_CANDIDATES: Final = f"""
INSERT INTO metric_contacts ({_METRIC_COLUMNS})
SELECT c.pk, c.started_us, c.end_us, f.next_repeat_us, c.tier, c.escalated, c.resolved, c.agent, c.team, c.queue,
    c.channel, c.reason
FROM fresh AS f JOIN contacts AS c ON c.pk = f.pk WHERE f.pk IN (SELECT pk FROM written) AND {_CANDIDATE}{{by_key}}
ORDER BY c.pk  -- index entries in order: neighbours in the pages they go to (a 2-3x cheaper load than at random)
ON CONFLICT (pk) DO NOTHING
RETURNING {_QUICK_COLUMNS}
"""
_FIX_CHANGED: Final = f"""
UPDATE metric_contacts AS m SET next_repeat_us = f.next_repeat_us
FROM fresh AS f WHERE m.pk = f.pk AND m.next_repeat_us IS DISTINCT FROM f.next_repeat_us{{by_key}}
RETURNING {", ".join(f"m.{column}" for column in _QUICK_COLUMNS.split(", "))}
"""


def _fixed(by_key: str, *, lowered_only: bool = False) -> str:
    """The common table expressions of a fix (``changed``: the candidates whose next repeat changed, with their
    new values) and of their copies among the quick returns: added or set where they are quick returns now,
    deleted where they are not (if they were). ``by_key``: the fix's condition reaching ``fresh`` by key.

    ``lowered_only``: the write only inserted contacts, so no copy is deleted (none is looked for). Each stored
    next repeat is exact over the committed contacts when the derive lock is taken (every write commits under
    it, after its derive step); adding contacts only adds repeatable starts, so a next repeat can only be
    lowered (or set where there was none), and a candidate that was a quick return stays one. A candidate that
    is not one after the fix was not one before either (its next repeat was later, or none), so it has no copy;
    nor do the write's own new candidates, added with no next repeat."""
    fixed = f"""changed AS ({_FIX_CHANGED.format(by_key=by_key)}
), quick_set AS (
    {_quick_added("changed")}
    ON CONFLICT (started_us, pk) DO UPDATE SET next_repeat_us = excluded.next_repeat_us
)"""
    if lowered_only:
        return fixed
    return f"""{fixed}, quick_unset AS (SELECT started_us, pk FROM changed WHERE ({QUICK_RETURN}) IS NOT TRUE
), quick_gone AS ({_quick_gone("quick_unset", by_key=bool(by_key))})"""


# An initial load's quick returns, copied from its candidates once they are all in (before a load the candidates
# are empty, and so is their copy).
LOAD_QUICK_RETURNS: Final = _quick_added("metric_contacts")
# An initial load: every candidate with its next repeat, in one sort of the contacts by customer (only the rows
# that can be a candidate or a repeat), written in time order: counting the edges of a question reads the rows
# for their next repeats (no index holds them), from consecutive pages when they are in time order (as a
# webhook-fed store's are); in the window's order by customer, each row was on a page of its own.
_LOAD_CANDIDATES: Final = f"""
INSERT INTO {{candidates}} ({_METRIC_COLUMNS})
SELECT {_METRIC_COLUMNS} FROM (
    SELECT c.pk, c.started_us, c.end_us, min(c.started_us) FILTER (WHERE c.repeatable) OVER (
        PARTITION BY c.customer_id ORDER BY c.started_us DESC
        RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    ) AS next_repeat_us, c.tier, c.escalated, c.resolved, c.agent, c.team, c.queue, c.channel, c.reason
    FROM {{contacts}} AS c WHERE c.direction = 'inbound' AND (c.parent_id IS NULL OR c.agent IS NOT NULL)
) AS c WHERE c.agent IS NOT NULL  -- (inbound: a candidate)
ORDER BY c.started_us
"""


def _spans_fixed(also: str = "", probed: str = "fresh", *, lowered_only: bool = False) -> str:
    """A small write's next repeats over its spans (``fresh``), and every candidate whose next repeat changed
    fixed, its day marked for the rollups: one statement, with the common table expressions ``also`` beside.
    ``probed``: the rows of ``fresh`` whose candidates are looked up (the others cannot have changed);
    ``lowered_only``: as ``_fixed``'s."""
    return f"""
WITH fresh AS MATERIALIZED ({_NEXT_REPEATS_OF.format(rows=_SPAN_ROWS)}
){also}, {_fixed(_BY_KEY.format(row="m", keys=probed), lowered_only=lowered_only)}
{postgres_rollups.mark_dirty("changed")}
"""


# A small write: its candidates added by the same statement (not yet visible to the fix, which leaves them alone).
_DERIVE_SPANS: Final = _spans_fixed(
    f", added AS ({_ADD_CANDIDATES.format(by_key=_BY_KEY.format(row='c', keys='written'))}\n), "
    f"quick_added AS ({_quick_added('added')})"
)
# A small write adds the candidates of the contacts it inserts before it takes the derive lock (the derive steps
# of other writes do not wait for it), in the statement that inserts them (from the rows it inserted: no contact
# is read again), with no next repeat (so none is a quick return yet). Under the lock, the fix then sets the next
# repeat of those that have one, as it does for any candidate of the span (they are this write's own rows by
# then, visible to it): a HOT update, which costs less than looking each one up here (a webhook's new contacts
# are mostly their customers' latest: ~6 of a batch of 500 have a next repeat). Only new rows, of contacts this
# write inserted: no other transaction sees them, so none waits for them (no deadlock), and no candidate row of
# another write is touched outside the lock. A write that turns out to update stored contacts too drops them
# with the other written contacts' candidates and adds them again with its own (``_DROP_OLD_CANDIDATES``); a
# large write's ``added`` leaves them be (ON CONFLICT DO NOTHING), and its fix sets them.
_EARLY_CANDIDATES: Final = f""", early AS (
    INSERT INTO metric_contacts ({_METRIC_COLUMNS})
    SELECT c.pk, c.started_us, c.end_us, NULL, c.tier, c.escalated, c.resolved, c.agent, c.team, c.queue,
        c.channel, c.reason
    FROM inserted AS c WHERE {_CANDIDATE}
    ORDER BY c.pk
)"""


def _insert_new(*, expecting_new: bool, candidates: bool) -> str:
    """The statement that inserts a chunk's new keys from ``incoming`` (``_INSERTED``), with their candidates if
    ``candidates`` (``_EARLY_CANDIDATES``). ``expecting_new``: a plain insert, which fails on a key stored already
    (run in a savepoint, ``_PostgresBulkWriter._insert``), and returns how many it inserted; else ON CONFLICT
    (source, id) DO NOTHING, which returns the keys it inserted. A speculative insertion (ON CONFLICT) looks each
    key up before it inserts it, and takes a lock token and writes a WAL record more for each: one writer's
    PostgreSQL CPU a contact -2.5 us."""
    return _INSERTED.format(
        conflict="" if expecting_new else "\n    ON CONFLICT (source, id) DO NOTHING",
        candidates=_EARLY_CANDIDATES if candidates else "",
    ) + ("SELECT count(*) FROM inserted" if expecting_new else "SELECT source, id FROM inserted")


_INSERT_NEW: Final = {
    (expecting_new, candidates): _insert_new(expecting_new=expecting_new, candidates=candidates)
    for expecting_new in (False, True)
    for candidates in (False, True)
}
# Its new candidates, added with no next repeat, are looked up only where one has a next repeat now: about half
# of a webhook batch's span rows are its new contacts, nearly all their customers' latest (an index probe each).
# Inserts only lower next repeats: no quick return is unset (``_fixed``), so none is looked for (it took 155 index
# probes a write of 1000 contacts, 3.3 of its derive step's 31 ms, all finding nothing).
_FIX_SPANS: Final = _spans_fixed(
    probed="fresh WHERE next_repeat_us IS NOT NULL OR pk NOT IN (SELECT pk FROM written)", lowered_only=True
)
# A large write: the next repeats into a table of their own (hash joins with what they are joined to).
_DERIVE_HISTORIES: Final = (
    f"CREATE TEMP TABLE fresh ON COMMIT DROP AS {_NEXT_REPEATS_OF.format(rows=_HISTORY_ROWS)}",
    "ANALYZE fresh",
    f"WITH added AS ({_ADD_CANDIDATES.format(by_key='')}) {_quick_added('added')}",
    f"WITH {_fixed('')} {postgres_rollups.mark_dirty('changed')}",
)
# One batch of a purge or an erasure: the rows are deleted (and locked) first, like a write's; what went is
# noted for the derive step. The condition is checked again on the row deleted (a concurrent update may have
# moved it out of the batch).
_DELETE_BATCH: Final = """
WITH gone AS (
    DELETE FROM contacts WHERE pk IN (SELECT pk FROM contacts WHERE {where} LIMIT %(limit)s) AND {where}
    RETURNING pk, customer_id, started_us
), noted AS (
    INSERT INTO written (pk, customer_id, started_us) SELECT pk, customer_id, started_us FROM gone
)
SELECT count(*) FROM gone
"""
_CONTACTS_WITH_NEXT_REPEAT: Final = (
    "SELECT c.*, m.next_repeat_us FROM contacts AS c LEFT JOIN metric_contacts AS m ON m.pk = c.pk"
)
_COPY_ORDER: Final = {
    "slack_links": "slack_user_id",
    "subscriptions": "id",
    "alert_rules": "id",
    "outbox": "created_us, seq",
    "agent_roster": "agent",
    "agent_platform_ids": "platform, platform_id",
}
_DIMENSIONS: Final = frozenset({"agent", "team", "queue", "channel", "reason"})
_LINK_AGENT: Final = """
INSERT INTO slack_links (slack_user_id, agent, linked_by, linked_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (slack_user_id) DO UPDATE SET
    agent = excluded.agent, linked_by = excluded.linked_by, linked_at = excluded.linked_at
"""
# The stored contacts whose agent is still one of the roster's platform ids: agent := the roster's name, team filled
# when empty, tier := the roster's tier when it has one. Next repeats do not depend on these: they stay.
_REMAP_CONTACTS: Final = """
UPDATE contacts AS c SET agent = i.agent, team = coalesce(c.team, r.team), tier = coalesce(r.tier, c.tier)
FROM agent_platform_ids AS i JOIN agent_roster AS r ON r.agent = i.agent
WHERE i.platform = c.source AND i.platform_id = c.agent
RETURNING c.pk
"""
_REMAP_CANDIDATES: Final = f"""
WITH remapped AS (
    UPDATE metric_contacts AS m SET agent = c.agent, team = c.team, tier = c.tier
    FROM contacts AS c WHERE c.pk = m.pk AND m.pk = ANY(%s)
    RETURNING m.started_us, m.pk, m.agent, m.team, m.tier
), quick_remapped AS (
    UPDATE metric_quick_returns AS q SET agent = r.agent, team = r.team, tier = r.tier
    FROM remapped AS r WHERE q.started_us = r.started_us AND q.pk = r.pk
)
{postgres_rollups.mark_dirty("remapped")}
"""  # (their copies among the quick returns too) and the days of the candidates it changed are rolled up again


class PostgresContactStore:
    """Contacts in one PostgreSQL database (``DATABASE_URL=postgresql://...``; any libpq URL), through a pool."""

    def __init__(self, url: str, *, max_connections: int = 10):
        self.url = url
        try:  # one direct connection first: a clear error now, not a pool retrying in the background
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                known = [name for name, _ in postgres_migrations.MIGRATIONS]
                if (newer := newer_schema(redact(url), postgres_migrations.recorded(conn), known)) is not None:
                    raise newer
                try:
                    applied = postgres_migrations.apply(conn)
                except psycopg.OperationalError as problem:  # (the database is reachable: say what failed)
                    raise ConnectionError(
                        f"could not migrate the PostgreSQL store at {redact(url)} (the failed migration left nothing"
                        f" behind): {_reason(problem)}"
                    ) from None
                drop_leftovers_if_idle(conn)  # (a killed import's staging tables, with its contacts)
        except psycopg.OperationalError as problem:
            raise ConnectionError(f"cannot connect to PostgreSQL at {redact(url)}: {_reason(problem)}") from None
        if applied:
            log.info("PostgreSQL schema migrated: %s", ", ".join(applied))
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
            configure=_make_temp_tables,
            open=True,
            name="acr-bot",
        )
        self._rollup_cache = RollupCache()  # decoded metric rollups (exact across processes: see the class)
        self._new_keys = _NewKeys()

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled connection in autocommit mode (for the scheduler's leader lock and the schedules)."""
        with self._pool.connection() as conn:
            yield conn

    # --- writing -------------------------------------------------------------------------------------

    def upsert(self, contacts: Iterable[Contact]) -> UpsertCounts:
        batch = contacts if isinstance(contacts, PackedContacts) else list(contacts)  # kept: written again if aborted

        def write() -> UpsertCounts:
            with self.bulk() as writer:
                add_all(writer, batch)
            return writer.counts

        return _retried(write)

    def row_packer(self) -> CopyRowPacker | None:
        """An import's reader processes make the binary COPY rows themselves (``postgres_copy``), where the
        installed psycopg has the formatter and the connections' client encoding is UTF-8, the rows' (PostgreSQL
        reads a COPY in the client encoding; on another one the readers would make rows only to be decoded)."""
        if not postgres_copy.AVAILABLE:
            return None
        with self._pool.connection() as conn:
            utf8 = conn.info.encoding == "utf-8"
        return CopyRowPacker(_now_text()) if utf8 else None

    @contextmanager
    def bulk(self, expected_rows: int = 0) -> Iterator[_PostgresBulkWriter]:
        writer: _PostgresBulkWriter | None = None
        try:
            with self._write_transaction() as conn:
                # (an import's transaction is idle while its readers make the next chunk: a server's
                # idle_in_transaction_session_timeout must not end it)
                conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
                writer = _PostgresBulkWriter(conn, self._pool, self._new_keys)
                if expected_rows >= BULK_LOAD_MIN_ROWS:  # (a webhook's write asks nothing more)
                    writer.defer_indexes_for(expected_rows)
                yield writer
                writer.finish()
        finally:
            if writer is not None:  # (once its transaction ended: the staging tables are dropped unless swapped in)
                writer.close()

    @contextmanager
    def _write_transaction(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A transaction that ends holding the derive lock. Its commit does not wait for the disk while it holds
        the lock (every other write's derive step waits for it); it is made durable just after, before this
        returns, so before a webhook is answered: a transaction that writes WAL and commits waiting for the
        disk flushes the WAL up to its own commit, which comes after this one's (``_FLUSH``)."""
        with self._pool.connection() as conn:
            with conn.transaction():
                yield conn
                conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute(_FLUSH)

    def purge_contacts_before(self, cutoff_us: int) -> int:
        return self._delete_in_batches("started_us < %(value)s", cutoff_us)

    def forget_customer(self, customer_id: str) -> int:
        return self._delete_in_batches("customer_id = %(value)s", customer_id)

    def _delete_in_batches(self, where: str, value: object) -> int:
        """Delete the contacts matching ``where`` in transactions of PURGE_BATCH (retried when PostgreSQL aborts
        one for a deadlock with a writer), each ending with the derive step of what it deleted."""
        with self._pool.connection() as conn:  # a killed import's staging tables go too (their contacts with them)
            drop_leftovers_if_idle(conn)
        deleted = 0
        while True:
            count = _retried(lambda: self._delete_batch(where, value))
            deleted += count
            if count < PURGE_BATCH:
                return deleted

    def _delete_batch(self, where: str, value: object) -> int:
        with self._write_transaction() as conn:
            row = conn.execute(_DELETE_BATCH.format(where=where), {"value": value, "limit": PURGE_BATCH}).fetchone()
            count = int(row[0]) if row is not None else 0
            if count:  # the deleted contacts' candidates go; the remaining contacts' next repeats are fixed
                conn.execute(";\n".join(_derive_steps(updated=True, rows=0, contacts_added=-count)))
        return count

    # --- reading -------------------------------------------------------------------------------------

    def count_contacts(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(_COUNT).fetchone()
        assert row is not None
        return int(row[0])

    def data_since_us(self) -> int | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT min(started_us) FROM metric_contacts").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def quick_returns(self, spec: QuickReturns) -> list[int]:
        with self._pool.connection() as conn:
            return quick_returns(conn, spec)

    def get_contact(self, source: str, contact_id: str) -> dict[str, Any] | None:
        with self._pool.connection() as conn:
            cursor = conn.execute(
                f"{_CONTACTS_WITH_NEXT_REPEAT} WHERE c.source = %s AND c.id = %s", (source, contact_id)
            )
            row = cursor.fetchone()
            names = [d.name for d in cursor.description or ()]
        return None if row is None else dict(zip(names, row, strict=True))

    def export_contacts(self) -> Iterator[Contact]:
        with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(name="export_contacts")  # server-side: streamed
            cursor.execute(f"SELECT {_COLUMN_LIST} FROM contacts ORDER BY pk")
            for row in cursor:
                yield Contact._make(row)

    def dimension_values(self, dimension: str) -> list[str]:
        if dimension not in _DIMENSIONS:
            raise ValueError(f"unknown dimension {dimension!r}")
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT DISTINCT {dimension} FROM contacts WHERE {dimension} IS NOT NULL ORDER BY {dimension}"
            ).fetchall()
        return [str(row[0]) for row in rows]

    # --- Slack links -----------------------------------------------------------------------------------

    def link_agent(self, slack_user_id: str, agent: str, linked_by: str | None = None) -> None:
        with self._pool.connection() as conn:
            conn.execute(_LINK_AGENT, (slack_user_id, agent, linked_by, _now_text()))

    def unlink_agent(self, slack_user_id: str) -> bool:
        with self._pool.connection() as conn:
            return conn.execute("DELETE FROM slack_links WHERE slack_user_id = %s", (slack_user_id,)).rowcount > 0

    def agent_for_user(self, slack_user_id: str) -> str | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT agent FROM slack_links WHERE slack_user_id = %s", (slack_user_id,)).fetchone()
        return None if row is None else str(row[0])

    def list_agent_links(self) -> list[AgentLink]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT slack_user_id, agent, linked_by, linked_at FROM slack_links ORDER BY agent, slack_user_id"
            ).fetchall()
        return [AgentLink(*row) for row in rows]

    # --- the agent roster (as sqlite_roster.py) ----------------------------------------------------------

    def replace_roster(self, entries: Sequence[RosterEntry]) -> int:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            conn.execute("DELETE FROM agent_platform_ids")
            conn.execute("DELETE FROM agent_roster")
            cursor.executemany(
                "INSERT INTO agent_roster (agent, team, tier, slack_user) VALUES (%s, %s, %s, %s)",
                [(e.agent, e.team, e.tier, e.slack_user) for e in entries],
            )
            cursor.executemany(
                "INSERT INTO agent_platform_ids (platform, platform_id, agent) VALUES (%s, %s, %s)",
                [(platform, platform_id, e.agent) for e in entries for platform, platform_id in e.ids],
            )
            cursor.executemany(
                _LINK_AGENT,
                [(e.slack_user, e.agent, "roster", _now_text()) for e in entries if e.slack_user is not None],
            )
            pks = [row[0] for row in conn.execute(_REMAP_CONTACTS).fetchall()]
            if pks:  # the candidates carry agent, team and tier too (derive lock after the row locks)
                conn.execute(_DERIVE_LOCK)
                conn.execute(_REMAP_CANDIDATES, (pks,))
        return len(pks)

    def roster(self) -> list[RosterEntry]:
        with self._pool.connection() as conn:
            ids: dict[str, list[tuple[str, str]]] = {}
            for platform, platform_id, agent in conn.execute(
                "SELECT platform, platform_id, agent FROM agent_platform_ids ORDER BY agent, platform, platform_id"
            ).fetchall():
                ids.setdefault(agent, []).append((platform, platform_id))
            rows = conn.execute("SELECT agent, team, tier, slack_user FROM agent_roster ORDER BY agent").fetchall()
        return [RosterEntry(agent, team, tier, slack, tuple(ids.get(agent, ()))) for agent, team, tier, slack in rows]

    def unknown_agents(self, sources: Sequence[str]) -> list[tuple[str, str, int]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT source, agent, count(*) FROM contacts WHERE source = ANY(%s) AND agent IS NOT NULL "
                "AND agent NOT IN (SELECT agent FROM agent_roster) GROUP BY source, agent ORDER BY source, agent",
                (list(sources),),
            ).fetchall()
        return [(str(source), str(agent), int(count)) for source, agent, count in rows]

    # --- scheduler -------------------------------------------------------------------------------------

    def scheduler_lease(self) -> PostgresSchedulerLease:
        return PostgresSchedulerLease(self.url)

    def schedules(self) -> PostgresSchedules:
        return PostgresSchedules(self._pool)

    def outbox(self) -> PostgresSchedules:
        return self.schedules()

    # --- db copy --------------------------------------------------------------------------------------

    def export_table(self, table: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        columns = COPIED_TABLES[table]
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {_COPY_ORDER[table]}").fetchall()
        return columns, rows

    def replace_tables(self, tables: Sequence[TableRows]) -> None:
        with self._pool.connection() as conn, conn.transaction():
            for table, columns, _ in reversed(tables):  # emptied last table first: a row may name an earlier one's
                if tuple(columns) != COPIED_TABLES[table]:
                    raise ValueError(f"{table}: columns {columns} are not {COPIED_TABLES[table]}")
                conn.execute(f"DELETE FROM {table}")
            for table, columns, rows in tables:
                booleans = [index for index, column in enumerate(columns) if column in BOOLEAN_COLUMNS]
                marks = ", ".join(["%s"] * len(columns))
                with conn.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                        [_with_booleans(row, booleans) for row in rows],
                    )
                if "id" in columns:  # later rules and subscriptions get numbers after the copied ones
                    conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) "
                        f"FROM {table}"
                    )

    # --- metrics ---------------------------------------------------------------------------------------

    @contextmanager
    def metric_reader(
        self, zone: tzinfo, *, refresh_days: int = REFRESH_ON_READ_DAYS
    ) -> Iterator[PostgresMetricReader]:
        """One REPEATABLE READ snapshot for one metric question (rollups and candidates seen at one instant).

        When the snapshot finds stale rollups, it is given up for a new one after rebuilding up to
        ``refresh_days`` stale days, unless another process is refreshing (a question never waits for that);
        it waits for the writes deriving at that moment for up to REFRESH_ON_READ_LOCK_WAIT to store them. In a
        pipeline: statements are sent without waiting for the
        answers of those before, so a question costs three round trips (its snapshot with the rollups' state,
        its counting from contacts, its commit) and one per rollup table it finds no decoded copy of."""
        with self._pool.connection() as conn:
            with _snapshot(conn):
                reader = PostgresMetricReader(conn, zone, self._rollup_cache)
                if not (refresh_days and reader.needs_refresh):
                    yield reader
                    return
            self._refresh(zone, refresh_days, wait=False, conn=conn)
            with _snapshot(conn):
                yield PostgresMetricReader(conn, zone, self._rollup_cache)

    def why_rows(self, query: WhyQuery) -> Iterator[WhyRow]:
        """One REPEATABLE READ snapshot, streamed (``postgres_why``)."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield from postgres_why.why_rows(conn, query)

    def escalation_counts(self, query: WhyQuery) -> tuple[int, int]:
        with self._pool.connection() as conn:
            return postgres_why.escalation_counts(conn, query)

    def refresh_rollups(self, zone: tzinfo, max_days: int | None = None) -> int:
        """Rebuild stale metric rollups (all, or the ``max_days`` most recent stale UTC days) for ``zone``;
        returns the number of UTC days rebuilt (a day a write marks again meanwhile stays stale). Built in
        batches of a few days outside any lock; writers wait only while each batch is stored."""
        with self._pool.connection() as conn:
            return self._refresh(zone, max_days, wait=True, conn=conn)

    def _refresh(self, zone: tzinfo, max_days: int | None, *, wait: bool, conn: psycopg.Connection[Any]) -> int:
        """Rebuild in batches on ``conn`` (``postgres_rollups``: each built from one snapshot, then stored under
        the derive lock). ``wait=False`` gives up rather than wait for another refresh, or for the derive lock
        longer than REFRESH_ON_READ_LOCK_WAIT."""
        if not wait and not _first(conn.execute(postgres_rollups.TRY_REFRESH_LOCK).fetchone()):
            return 0
        if wait:
            conn.execute(postgres_rollups.REFRESH_LOCK)
        try:
            return self._refresh_batches(zone, max_days, wait=wait, conn=conn)
        finally:
            conn.execute(postgres_rollups.REFRESH_UNLOCK)

    def _refresh_batches(self, zone: tzinfo, max_days: int | None, *, wait: bool, conn: psycopg.Connection[Any]) -> int:
        done = 0
        tried: set[int] = set()  # UTC days built by this refresh (each once, though a write marked it again)
        while max_days is None or done < max_days:
            batch = REFRESH_BATCH_DAYS if max_days is None else min(REFRESH_BATCH_DAYS, max_days - done)
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                current = postgres_rollups.zone_is_current(conn, zone)
                built = postgres_rollups.build(conn, zone, batch, tried) if current else None
            if built is not None and not built.marks:
                break
            try:
                with conn.transaction():
                    if not wait:
                        conn.execute(f"SET LOCAL lock_timeout = '{REFRESH_ON_READ_LOCK_WAIT}'")
                    conn.execute(_DERIVE_LOCK)
                    if built is None:
                        postgres_rollups.reset_for_zone(conn, zone)
                        continue
                    done += postgres_rollups.store_built(conn, built)
            except errors.LockNotAvailable:
                break
            tried |= built.marks.keys()
        return done


@contextmanager
def _snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """A REPEATABLE READ, READ ONLY transaction in a pipeline: its BEGIN goes with the first statement."""
    with conn.pipeline(), conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


class PostgresSchedulerLease:
    """A session advisory lock on a connection of its own: held while that connection lives, so it goes with a
    process that dies (the server ends the session; keepalives notice a peer that vanished within ~25 s)."""

    def __init__(self, url: str):
        self._url = url
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return True
            except psycopg.Error:
                self.release()
                return False
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        except psycopg.Error as problem:
            log.warning("scheduler lease: cannot connect to PostgreSQL: %s", _reason(problem))
            return False
        try:
            # The server notices a vanished client as quickly (its default waits two hours).
            conn.execute("SET tcp_keepalives_idle = 10")
            conn.execute("SET tcp_keepalives_interval = 5")
            conn.execute("SET tcp_keepalives_count = 3")
            row = conn.execute(_SCHEDULER_LOCK).fetchone()
        except psycopg.Error:
            conn.close()
            raise
        if row is not None and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # the session ends: its advisory lock is released


class _PostgresBulkWriter:
    """Writes chunks inside the transaction opened by ``PostgresContactStore.bulk``."""

    def __init__(
        self,
        conn: psycopg.Connection[tuple[Any, ...]],
        pool: ConnectionPool[Any] | None = None,
        new_keys: _NewKeys | None = None,
    ):
        self._conn = conn
        self._pool = pool  # (connections for a staged initial load's rows and its end)
        self._new_keys = new_keys  # whether the store's chunks are inserted expecting new keys (None: never)
        self._savepoints = 0
        self._staging: StagedLoad | None = None  # an initial load's staging tables (dropped by ``close``)
        self._staged = False  # rows go to the staging tables (swapped in at the end)
        self.counts = UpsertCounts()
        self._received_at = _now_text()
        self._updated = False  # some stored contact was changed (its candidate row must go)
        self._written = 0
        self._deferred: list[tuple[str, str, str]] = []  # (table, index, definition) dropped until the end
        self._initial = False  # an initial load: the store had no contacts (``defer_indexes_for``)
        self._copy_straight = False  # chunks are copied straight into contacts (an initial load, no key again)
        self._candidate_key: tuple[str, str] | None = None  # (name, definition) dropped until the end

    def defer_indexes_for(self, rows: int) -> None:
        """Called first with about how many contacts the write will bring (``ContactStore.bulk``'s hint).

        A load of at least BULK_LOAD_MIN_ROWS, and at least as many as the store holds (an initial load), drops
        the secondary indexes of the contacts and their candidates and builds each at the end with one sort,
        several times cheaper than inserting into them row by row. It takes both tables for itself and the derive
        lock until the commit, so other processes' writes, and their questions that read candidates, wait for
        it. Only if it gets both within BULK_LOAD_LOCK_WAIT, never waiting for one while holding the other (no
        deadlock with a writer that holds rows and waits for the derive lock); otherwise it writes row by row.
        The drops are part of the transaction: a rollback restores the indexes. An initial load into a store with
        no contacts drops nothing: it stages its rows in tables of its own and swaps them in at the end
        (``postgres_load``), when the tables allow it.
        """
        conn = self._conn
        stored = _first(conn.execute(_COUNT).fetchone())
        if rows < BULK_LOAD_MIN_ROWS or rows < stored:
            return
        # An initial load stages its rows if it can (``postgres_load``): the staging tables are made first.
        staging = None
        if stored == 0 and self._pool is not None:
            self._staging = staging = StagedLoad.begin(self._pool, BULK_LOAD_LOCK_WAIT)
        previous = _first(conn.execute("SELECT current_setting('lock_timeout')").fetchone())
        try:
            with conn.transaction():  # a savepoint: the table locks go with it if the derive lock is busy
                conn.execute(f"SET LOCAL lock_timeout = '{BULK_LOAD_LOCK_WAIT}'")
                conn.execute("LOCK TABLE contacts, metric_contacts IN ACCESS EXCLUSIVE MODE")
                if not _first(conn.execute(_TRY_DERIVE_LOCK).fetchone()):
                    raise _Busy
        except (_Busy, errors.LockNotAvailable):
            log.info("bulk load: the store is busy; writing row by row into its indexes")
            self.close()  # (no staging: its tables, import lock and connection go now, not at the end)
            return
        finally:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (previous,))
        self._deferred = [tuple(row) for row in conn.execute(_SECONDARY_INDEXES).fetchall()]
        conn.execute(_LOAD_MAINTENANCE_WORK_MEM)
        empty = _first(conn.execute(_EMPTY).fetchone())
        if staging is not None and empty:  # the store's tables stay as they are until the swap at the end
            self._initial = self._copy_straight = self._staged = True
            return
        self.close()  # (a contact came meanwhile: no staging)
        for _, index, _ in self._deferred:
            conn.execute(f"DROP INDEX {index}")
        if empty:
            self._start_initial_load()

    def _start_initial_load(self) -> None:
        """An initial load (the store has no contacts; the tables are this transaction's alone): chunks are
        copied straight into contacts, and the candidates, with their key and indexes, are built at the end."""
        conn = self._conn
        self._initial = self._copy_straight = True
        self._candidate_key = cast("tuple[str, str] | None", conn.execute(_CANDIDATE_KEY).fetchone())
        if self._candidate_key is not None:
            conn.execute(f"ALTER TABLE metric_contacts DROP CONSTRAINT {self._candidate_key[0]}")
        conn.execute(f"SET LOCAL work_mem = '{_LOAD_WORK_MEM}'")

    def close(self) -> None:
        """Called once the write's transaction ended: the staging tables of an initial load, if any, are dropped
        (unless swapped in) and their connection given back."""
        staging, self._staging, self._staged = self._staging, None, False
        if staging is not None:
            staging.close()

    def _rebuild_indexes(self, table: str) -> None:
        """Build the indexes of ``table`` that ``defer_indexes_for`` dropped."""
        for _, _, definition in (deferred for deferred in self._deferred if deferred[0] == table):
            self._conn.execute(definition)
        self._deferred = [deferred for deferred in self._deferred if deferred[0] != table]

    def add(self, contacts: Sequence[Contact]) -> None:
        """Write a chunk (Contacts, or plain tuples in their field order): as if each were written in turn (the
        counts are those of sequential writes)."""
        if not contacts:
            return
        if self._copy_straight and self._copied_straight(contacts):
            return
        if self._upsert_chunk(contacts):
            self.counts.inserted += len(contacts)

    def add_parts(self, parts: Sequence[Sequence[Contact]]) -> list[UpsertCounts]:
        """Write several chunks (a group commit's requests) as if each were added in turn, and return what each
        did. As ONE chunk (one COPY, one INSERT, in one key order) when no key comes in two of them, so that each
        key's result belongs to one part; else, or in an initial load, one ``add`` after another. A group of two
        webhook batches of 500 as one chunk: ~0.8 us a contact less of the server's CPU (a TRUNCATE, a COPY and an
        INSERT fewer, each a round trip with psycopg's Python around it) and ~1 us less of PostgreSQL's."""
        results = [UpsertCounts() for _ in parts]
        counts_of: dict[tuple[str, str], UpsertCounts] = {}  # each key's part's counts
        for part, counts in zip(parts, results, strict=True):
            for contact in part:
                if counts_of.setdefault((contact[0], contact[1]), counts) is not counts:
                    return self._add_in_turn(parts)
        if self._copy_straight or len(parts) < 2 or not counts_of:
            return self._add_in_turn(parts)
        if self._upsert_chunk(list(chain.from_iterable(parts)), counts_of):
            for part, counts in zip(parts, results, strict=True):
                counts.inserted += len(part)
        for counts in results:
            self.counts.add(counts)
        return results

    def _add_in_turn(self, parts: Sequence[Sequence[Contact]]) -> list[UpsertCounts]:
        return [counted_add(self, part) for part in parts]

    def _upsert_chunk(
        self, contacts: Sequence[Contact], counts_of: dict[tuple[str, str], UpsertCounts] | None = None
    ) -> bool:
        """``add``'s write of a chunk. True: every contact was new and no key came twice, and nothing is counted
        yet; else each key was counted, in ``counts_of`` (its part's counts) if given, else in ``self.counts``."""
        # What each key ends as if it is new: itself when the chunk has it once (the usual case), else its first
        # version inserted and the others applied in turn.
        if_new = {(contact[0], contact[1]): contact for contact in contacts}
        versions: dict[tuple[str, str], list[Contact]] | None = None  # each key's versions, if one comes twice
        if len(if_new) < len(contacts):
            versions = {}
            for contact in contacts:
                versions.setdefault((contact[0], contact[1]), []).append(contact)
            if_new = {key: _apply_to_new(given, UpsertCounts()) for key, given in versions.items()}
        conn = self._conn
        if self._written:  # the previous chunk's (a transaction starts with it empty); TRUNCATE, not DELETE: the
            conn.execute("TRUNCATE incoming")  # deleted rows would stay until the commit, for every scan to skip
        self._copy_incoming(sorted(if_new.items()))  # in key order: the rows are locked in this order
        # New keys are inserted (and so locked) first; only the others are looked up, locked and read (an
        # import into an empty store reads nothing back). A key another transaction is inserting is waited for.
        self._written += len(if_new)
        # A small write's candidates go in with its contacts (``_EARLY_CANDIDATES``; ``_derive_steps`` then adds
        # none), a large one's under the derive lock; an initial load builds them all at its end.
        candidates = not self._initial and self._written < WINDOW_PASS_MIN_ROWS
        inserted = self._insert(if_new.keys(), candidates)
        if versions is None and len(inserted) == len(if_new):  # all new, each once: nothing else to work out
            return True
        stored: dict[tuple[str, str], list[Any]] = {}
        pending = if_new.keys() - inserted
        while pending:  # (again only if a key was erased by another transaction since: it is new again)
            sources, ids = (list(column) for column in zip(*sorted(pending), strict=True))
            stored.update({(s, i): row for s, i, *row in conn.execute(_LOCK_STORED, (sources, ids)).fetchall()})
            pending -= stored.keys()
            if pending:
                again = self._insert_on_conflict(candidates)
                inserted |= again
                pending -= again
        counts = self.counts
        changed: list[tuple[int, str, int]] = []  # (pk, old customer, old start)
        rewrite: list[tuple[tuple[str, str], Contact]] = []  # keys whose incoming row is not what they end as
        for key in if_new:
            if counts_of is not None:
                counts = counts_of[key]
            given = versions[key] if versions is not None else [if_new[key]]
            if key in inserted:
                counts.inserted += 1
                _apply_to_new(given, counts)
                continue
            pk, customer, started, raw, updated_us = stored[key]
            current = object()  # the stored version
            final = _apply(_Version(current, raw, updated_us), given, counts)
            if final is not current:
                changed.append((pk, customer, started))
                if final is not if_new[key]:
                    rewrite.append((key, cast(Contact, final)))
        if rewrite:
            sources, ids = (list(column) for column in zip(*(key for key, _ in rewrite), strict=True))
            conn.execute(_DROP_INCOMING, (sources, ids))
            self._copy_incoming(rewrite)
        if changed:
            pks, customers, starts = (list(column) for column in zip(*changed, strict=True))
            conn.execute(_NOTE_OLD, (pks, customers, starts))
            conn.execute(_UPDATE_CHANGED, (self._received_at, pks))
            self._updated = True
        return False

    def _insert(self, keys: AbstractSet[tuple[str, str]], candidates: bool) -> AbstractSet[tuple[str, str]]:
        """Insert the new ones of ``keys`` (the rows of ``incoming``; with their candidates if ``candidates``);
        returns them."""
        if self._inserted_all(len(keys), candidates):
            return keys
        return self._insert_on_conflict(candidates)

    def _insert_on_conflict(self, candidates: bool) -> set[tuple[str, str]]:
        """Insert the rows of ``incoming`` whose keys are not stored (ON CONFLICT DO NOTHING); returns their keys."""
        return set(map(tuple, self._conn.execute(_INSERT_NEW[False, candidates], (self._received_at,)).fetchall()))

    def _inserted_all(self, keys: int, candidates: bool) -> bool:
        """Insert the ``keys`` rows of ``incoming`` expecting each to be new (``_insert_new``), in a savepoint,
        where it is worth it (``EXPECT_NEW_MIN_ROWS``, ``EXPECT_NEW_SAVEPOINTS``, ``_NewKeys``). False when it was
        not tried, or when a key was stored already (or committed meanwhile by another writer): then nothing of
        it stays, and the chunk goes the usual way (ON CONFLICT)."""
        new_keys = self._new_keys
        if new_keys is None or keys < EXPECT_NEW_MIN_ROWS or self._savepoints >= EXPECT_NEW_SAVEPOINTS:
            return False
        if new_keys.paused():
            return False
        self._savepoints += 1
        try:
            with self._conn.transaction():
                self._conn.execute(_INSERT_NEW[True, candidates], (self._received_at,))
        except errors.UniqueViolation:
            new_keys.pause()
            return False
        return True

    def _copied_straight(self, contacts: Sequence[Contact]) -> bool:
        """Copy a chunk of an initial load straight into contacts, if each of its keys is new: all of it (True),
        or, when a key comes again (in the chunk, or stored by an earlier one), none of it (False; from then on
        every chunk goes the way of any write). A COPY with binary rows (made by the readers, or here), in a
        savepoint. A staged load copies every chunk (its keys are settled at the end: ``_settle``)."""
        write: Callable[[Any], None]
        # Made by the import's readers, with text in UTF-8: streamed as they are, unless the connection's client
        # encoding is another (PostgreSQL would read the bytes in that one; ``row_packer`` offers none then, but
        # a caller may hold rows packed for another store), or they carry another received_at than the write's,
        # when they are written row by row.
        if (
            isinstance(contacts, CopyRows)
            and self._conn.info.encoding == "utf-8"
            and self._carries_received_at(contacts)
        ):
            if not (contacts.keys_unique or self._staged):
                return False
            rows = len(contacts)

            def write(copy: Any) -> None:
                copy.write(HEADER)
                copy.write(contacts.data)
                copy.write(TRAILER)

        else:
            width = len(_COLUMNS)
            values = contacts.values if isinstance(contacts, PackedContacts) else list(chain.from_iterable(contacts))
            rows = len(values) // width
            if not self._staged and len(set(zip(values[0::width], values[1::width], strict=True))) < rows:
                return False
            columns = [values[column::width] for column in range(width)]

            def write(copy: Any) -> None:
                copy.set_types([*COPY_TYPES, "text"])
                write_row = copy.write_row
                for row in zip(*columns, repeat(self._received_at)):
                    write_row(row)

        conn, table = self._conn, "contacts"
        if self._staged and self._staging is not None:  # (the load's rows go to its staging tables)
            conn, table = self._staging.loader, staged("contacts")
        statement = _COPY_CONTACTS.format(table=table)
        try:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
                write(copy)
        except errors.UniqueViolation:
            self._copy_straight = False
            return False
        self.counts.inserted += rows
        self._written += rows
        return True

    def _settle(self, conn: psycopg.Connection[Any]) -> None:
        """The keys a staged load was given more than once (committed in its staging contacts, on ``conn``) end
        as if their versions were written in turn, and are counted so: each key's first row stays, as the version
        the key ends as; the others go. The versions of a key are folded as they come, and settled in batches of
        SETTLE_BATCH rows: memory holds a batch, however often one key came."""
        table = staged("contacts")
        gone: list[int] = []
        final: list[tuple[int, Contact]] = []  # (pk of the first row, the version it ends as) where not the first

        def settle_batch() -> None:
            conn.execute(f"DELETE FROM {table} WHERE pk = ANY(%s)", (gone,))
            if final:
                conn.execute("TRUNCATE incoming")
                self._copy_incoming([((contact[0], contact[1]), contact) for _, contact in final], conn)
                conn.execute(_SETTLE_FINAL.format(table=table), ([pk for pk, _ in final],))
            gone.clear()
            final.clear()

        first_pk, first, state = 0, None, _Version(None, None, None)
        with conn.transaction(), conn.cursor(name="acr_settle") as cursor:
            cursor.itersize = SETTLE_FETCH
            cursor.execute(_REPEATED_KEYS.format(table=table))
            for row in cursor:
                version = Contact._make(row[1:])
                if first is None or (version[0], version[1]) != (first[0], first[1]):
                    if first is not None and state.current is not first:
                        final.append((first_pk, cast(Contact, state.current)))
                    first_pk, first = row[0], version
                    state = _Version.of(version)
                else:  # a later version of the key: applied to what it is so far, its row goes
                    self.counts.inserted -= 1
                    state = state.then(version, self.counts)
                    gone.append(row[0])
                if len(gone) + len(final) >= SETTLE_BATCH:
                    settle_batch()
            if first is not None and state.current is not first:
                final.append((first_pk, cast(Contact, state.current)))
            settle_batch()

    def _carries_received_at(self, rows: CopyRows) -> bool:
        """Whether ``rows`` carry the write's received_at (the first chunk's, if it is the first)."""
        if not self._written:
            self._received_at = rows.received_at
        return rows.received_at == self._received_at

    def _copy_incoming(
        self, rows: Sequence[tuple[tuple[str, str], Contact]], conn: psycopg.Connection[Any] | None = None
    ) -> None:
        with (conn or self._conn).cursor() as cursor, cursor.copy(_COPY_INCOMING) as copy:
            write_binary_copy(cursor, copy, map(itemgetter(1), rows), COPY_TYPES)

    def finish(self) -> None:
        """The derive step, under the derive lock: candidates of the written contacts, then next repeats (and the
        indexes a bulk load dropped: those of the contacts first, which the derive step reads by)."""
        if self._staged:
            self._finish_staged()
            return
        self._rebuild_indexes("contacts")
        if self._initial:
            steps = [load_candidates(), LOAD_QUICK_RETURNS, *_count_steps(self.counts.inserted, "metric_contacts")]
            if self._candidate_key is not None:
                name, definition = self._candidate_key
                steps.append(f"ALTER TABLE metric_contacts ADD CONSTRAINT {name} {definition}")
            self._conn.execute(";\n".join(steps))
        elif self._written:
            steps = _derive_steps(updated=self._updated, rows=self._written, contacts_added=self.counts.inserted)
            self._conn.execute(";\n".join(steps))  # one round trip (no parameters: the simple query protocol)
        self._rebuild_indexes("metric_contacts")

    def _finish_staged(self) -> None:
        """The end of a staged initial load: its rows committed, the candidates and every index built on two
        connections side by side (``postgres_load.run_builds``), then the staging tables swapped in, the days
        marked for the rollups and the count, in this transaction."""
        staging, pool = self._staging, self._pool
        assert staging is not None and pool is not None
        staging.commit_rows()
        setup = [f"SET LOCAL work_mem = '{_LOAD_WORK_MEM}'", _LOAD_MAINTENANCE_WORK_MEM, NO_DISK_WAIT]
        with pool.connection() as second:
            try:
                run_builds([staging.loader, second], staging.builds(load_candidates), setup)
            except errors.UniqueViolation:  # a key came more than once: settled, then everything built again
                staging.loader.execute(";\n".join(staging.undo_builds()))
                self._settle(staging.loader)
                run_builds([staging.loader, second], staging.builds(load_candidates), setup)
        steps = [
            *staging.swap_statements(),
            LOAD_QUICK_RETURNS,
            *_count_steps(self.counts.inserted, "metric_contacts"),
        ]
        self._conn.execute(";\n".join(steps))


def load_candidates(contacts: str = "contacts", candidates: str = "metric_contacts") -> str:
    """An initial load's candidates, from the table ``contacts`` into ``candidates`` (the store's, or staging)."""
    return _LOAD_CANDIDATES.format(contacts=contacts, candidates=candidates)


class _NewKeys:
    """Whether a store's writers insert a chunk expecting its keys to be new: not for the next EXPECT_NEW_PAUSE
    chunks after one that had a stored key (the threads of a process share it; a race only moves a pause)."""

    def __init__(self) -> None:
        self._pause = 0

    def pause(self) -> None:
        self._pause = EXPECT_NEW_PAUSE

    def paused(self) -> bool:
        """Whether the chunk about to be inserted goes with ON CONFLICT (counting it against the pause)."""
        if self._pause <= 0:
            return False
        self._pause -= 1
        return True


class _Busy(Exception):
    """Raised inside a savepoint to roll it back: the derive lock is held by another transaction."""


def _derive_steps(*, updated: bool, rows: int, contacts_added: int) -> list[str]:
    """The derive step of a transaction that noted what it wrote or deleted in ``written`` (``rows`` written
    rows; ``updated``: some stored contact changed or went, so its old candidate row must go), as statements.

    Under the derive lock: the candidates of the written contacts (a deleted contact has none left; those of a
    small write's new contacts are in already, ``_EARLY_CANDIDATES``), then the next repeats of the touched
    customers' contacts, worked out over every committed contact; then the count.
    """
    large = rows >= WINDOW_PASS_MIN_ROWS
    if not (updated or large):  # only new contacts: their candidates went in with them
        return [_DERIVE_LOCK, _FIX_SPANS, *_count_steps(contacts_added, "written")]
    steps = [_DERIVE_LOCK]
    if updated:
        steps.append(
            _DROP_OLD_CANDIDATES.format(
                by_key="" if large else _BY_KEY.format(row="m", keys="written"),
                quick_gone=_quick_gone("quick_dropped", by_key=not large),
            )
        )
    steps += _DERIVE_HISTORIES if large else [_DERIVE_SPANS]
    # The days of every candidate added, dropped or moved (old and new starts); the fixes mark their own.
    return steps + _count_steps(contacts_added, "written")


def _count_steps(contacts_added: int, changed: str) -> list[str]:
    """The last statements of a derive step: the days of ``changed`` (a table of changed starts) marked for the
    rollups, and the count of contacts."""
    return [
        postgres_rollups.mark_dirty(changed),
        f"UPDATE store_stats SET value = value + {int(contacts_added)} WHERE name = 'contacts'",
    ]


def _retried(transaction: Callable[[], _T]) -> _T:
    """Run ``transaction`` again when PostgreSQL aborted it (a deadlock of crossing row locks, or a
    serialization failure), up to RETRIES times."""
    for attempt in range(1, RETRIES + 1):
        try:
            return transaction()
        except (errors.DeadlockDetected, errors.SerializationFailure) as problem:
            if attempt == RETRIES:
                raise
            log.info("transaction aborted by PostgreSQL (%s); trying again", type(problem).__name__)
    raise AssertionError("unreachable")


class _Version(NamedTuple):
    """What a key is so far, as versions are applied to it in turn: the version, its raw and its ``updated_us``."""

    current: object
    raw: str | None
    updated_us: int | None

    @classmethod
    def of(cls, contact: Contact) -> _Version:
        """``contact`` as the version a key is (a new key's first, or one that replaced it)."""
        return cls(contact, cast(str, contact[_RAW]), cast("int | None", contact[_UPDATED]))

    def then(self, contact: Contact, counts: UpsertCounts) -> _Version:
        """``contact`` applied, counted as the store port says (``ContactStore``): unchanged (same raw), stale
        (older ``updated_us``), or updated (it becomes the version)."""
        version = cast("int | None", contact[_UPDATED])
        if contact[_RAW] == self.raw:
            counts.unchanged += 1
        elif self.updated_us is not None and version is not None and version < self.updated_us:
            counts.stale += 1
        else:
            counts.updated += 1
            return _Version.of(contact)
        return self


def _apply(state: _Version, given: Sequence[Contact], counts: UpsertCounts) -> object:
    """Apply ``given`` in turn to the version ``state`` is, counting each. Returns the version the key ends as
    (``state.current`` itself when nothing replaced it)."""
    for contact in given:
        state = state.then(contact, counts)
    return state.current


def _apply_to_new(given: Sequence[Contact], counts: UpsertCounts) -> Contact:
    """``_apply`` to a new key: its first version is inserted (not counted here), the others applied in turn."""
    return cast(Contact, _apply(_Version.of(given[0]), given[1:], counts))


def _make_temp_tables(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Each pooled connection keeps the writer's temporary tables (emptied by every commit)."""
    for statement in _TEMP_TABLES:
        conn.execute(statement)


def _first(row: tuple[Any, ...] | None) -> Any:
    return None if row is None else row[0]


def _with_booleans(row: Sequence[Any], booleans: list[int]) -> list[Any]:
    values = list(row)
    for index in booleans:
        values[index] = None if values[index] is None else bool(values[index])
    return values


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _reason(problem: BaseException) -> str:
    """Why a connection failed, in one line (libpq's messages name the host, never the password)."""
    text = " ".join(str(problem).split())
    return text or type(problem).__name__

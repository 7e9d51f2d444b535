"""An initial load (``acr-bot ingest`` or ``db copy`` into a PostgreSQL store with no contacts) through committed
staging tables, so that its end runs on two connections, on two cores, instead of one.

Inside one transaction every step at the end of a load (the candidates with their next repeats, then eight index
builds) ran on that transaction's one connection: no other connection sees its rows. Here the rows go into
staging tables (``acr_import_contacts``, ``acr_import_metric_contacts``, copies of the store's two contact tables)
on a connection of their own, committed at the end of the load; two connections then build the candidates and
the indexes side by side, and the load's own transaction, which held the store's two tables and the derive lock
from its start (other processes' writes wait for it, as for any initial load), swaps the staging tables in for
the empty ones in one short step at its commit. A load that fails or is killed leaves the store as it was, and at
most staging tables, which the next store to open, erasure, purge or initial load drops (under the import lock:
only one load stages at a time).

The staging contacts get no index while the rows come, not even their keys (their upkeep was a third of the
server's work in the COPY): every chunk is copied as it is, and a key given more than once is found when its
unique index is built at the end, then settled as if its versions were written in turn (``_settle`` of the
store's bulk writer), and the builds made again.

The candidates' copy of the quick returns (``metric_quick_returns``) is not staged: the load's own transaction fills
it from the swapped-in candidates (``bot.storage.postgres``).

Only tables that a swap reproduces exactly are swapped: none with grants (column grants too), storage options
other than the store's own (``OWN_OPTIONS``, which the staging tables get too), triggers, rules, views, policies,
publications, foreign keys, a replica identity, a clustering index, a tablespace, or column statistics targets or
options of their own (a DBA's additions); a store with any loads inside its transaction as before.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

log = logging.getLogger("acr_bot.storage")

PREFIX: Final = "acr_import_"
TABLES: Final = ("contacts", "metric_contacts")
_IMPORT_LOCK_KEY: Final = "hashtext('acr-bot import'), hashtext(current_schema())"
_TRY_IMPORT_LOCK: Final = f"SELECT pg_try_advisory_lock({_IMPORT_LOCK_KEY})"
_IMPORT_UNLOCK: Final = f"SELECT pg_advisory_unlock({_IMPORT_LOCK_KEY})"
_ANY_LEFT: Final = "SELECT to_regclass(%s) IS NOT NULL OR to_regclass(%s) IS NOT NULL"
# The storage options the store's migrations give its tables (metric_contacts: room on each page for the next
# repeat's HOT update, migration 016): given to the staging copies too, and the only ones a swap accepts.
OWN_OPTIONS: Final = {"metric_contacts": ("fillfactor=85",)}
_OWN_OPTIONS_OF_C: Final = "CASE c.oid {} END".format(
    " ".join(
        f"WHEN '{table}'::regclass THEN ARRAY[{', '.join(repr(option) for option in options)}]"
        for table, options in OWN_OPTIONS.items()
    )
)
# What a swap would lose or break: a table with any of these is loaded the old way.
_NOT_SWAPPABLE: Final = f"""
SELECT c.relname FROM pg_class AS c
WHERE c.oid IN ('contacts'::regclass, 'metric_contacts'::regclass) AND (
    c.relacl IS NOT NULL OR c.reloptions IS DISTINCT FROM {_OWN_OPTIONS_OF_C}
    OR c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
    OR c.relkind <> 'r' OR c.relhastriggers OR c.relhasrules OR c.relrowsecurity OR c.relhassubclass OR c.relispartition
    OR EXISTS (SELECT FROM pg_depend AS d WHERE d.refobjid = c.oid AND d.classid = 'pg_rewrite'::regclass)
    OR EXISTS (SELECT FROM pg_policy AS p WHERE p.polrelid = c.oid)
    OR EXISTS (SELECT FROM pg_publication_rel AS p WHERE p.prrelid = c.oid)
    OR EXISTS (SELECT FROM pg_constraint AS k WHERE k.confrelid = c.oid OR (k.conrelid = c.oid AND k.contype = 'x'))
    OR EXISTS (
        SELECT FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attnum > 0
        AND (a.attstattarget >= 0 OR a.attoptions IS NOT NULL OR a.attacl IS NOT NULL)
    )
    OR c.relreplident <> 'd' OR c.reltablespace <> 0
    OR EXISTS (
        SELECT FROM pg_index AS i JOIN pg_class AS x ON x.oid = i.indexrelid
        WHERE i.indrelid = c.oid AND (i.indisclustered OR x.reltablespace <> 0)
    )
)
"""
# Every index of the two tables: (table, index, definition, constraint type: 'p', 'u' or NULL, its columns
# (included ones too), whether it is partial).
_INDEXES: Final = """
SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), k.contype::text,
    i.indnatts::int, i.indpred IS NOT NULL
FROM pg_index AS i LEFT JOIN pg_constraint AS k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
WHERE i.indrelid IN ('contacts'::regclass, 'metric_contacts'::regclass)
ORDER BY 2
"""
_SEQUENCE: Final = "SELECT pg_get_serial_sequence(%s, 'pk')"
_DEFINITION: Final = re.compile(r"^(CREATE (?:UNIQUE )?INDEX )(\S+)( ON (?:ONLY )?)(\S+)( .*)$", re.DOTALL)
_CONSTRAINT_KINDS: Final = {"p": "PRIMARY KEY", "u": "UNIQUE"}
# The commits of a load's rows and builds do not wait for the disk: nothing of them is visible until the swap, and
# the load's own transaction, which swaps, commits after them and is flushed before the import returns (so every
# commit before it in the WAL is too). A crash before then loses only staging tables, as a killed load leaves.
NO_DISK_WAIT: Final = "SET LOCAL synchronous_commit = off"
# The contacts' index builds run beside the candidates' one sort, which has no parallel workers (an INSERT): on two
# cores their workers only took CPU from it. The candidates' indexes, built after it on both connections, keep theirs.
_NO_WORKERS: Final = "SET LOCAL max_parallel_maintenance_workers = 0"
# Autovacuum kept off the staging tables until they are swapped in: its lock would hold up their index builds
# and the swap (until the deadlock timeout cancelled it).
_NO_VACUUM: Final = ("autovacuum_enabled = false", "toast.autovacuum_enabled = false")
_VACUUM: Final = "(autovacuum_enabled, toast.autovacuum_enabled)"


def _staging_options(table: str) -> str:
    """The storage options of a staging table: the store's own for ``table``, and autovacuum off until the swap."""
    return f"({', '.join([*OWN_OPTIONS.get(table, ()), *_NO_VACUUM])})"


def staged(name: str) -> str:
    """The staging name of a table, index or sequence (unqualified)."""
    return PREFIX + name


@dataclass
class Index:
    table: str
    name: str
    definition: str  # as pg_get_indexdef gives it, on the store's table
    constraint: str | None  # 'p', 'u' or None
    columns: int = 1  # key and included columns
    partial: bool = False

    def staged_definition(self) -> str:
        """The same index on the staging table, under its staging name."""
        match = _DEFINITION.match(self.definition)
        if match is None:
            raise ValueError(f"unexpected index definition: {self.definition}")
        head, _, on, table, rest = match.groups()
        schema = table.rsplit(".", 1)[0] + "." if "." in table else ""
        return f"{head}{staged(self.name)}{on}{schema}{staged(self.table)}{rest}"


@dataclass
class Build:
    """One statement of the load's end, run on a worker connection once the builds it waits for are done."""

    name: str
    statements: Sequence[str]
    after: frozenset[str] = frozenset()


@dataclass
class _Schedule:
    builds: list[Build]
    done: set[str] = field(default_factory=set)
    failed: BaseException | None = None
    lock: threading.Condition = field(default_factory=threading.Condition)

    def next(self) -> Build | None:
        """The first build whose predecessors are done (waits for one); None when none is left (or one failed)."""
        with self.lock:
            while True:
                if self.failed is not None or not self.builds:
                    return None
                for build in self.builds:
                    if build.after <= self.done:
                        self.builds.remove(build)
                        return build
                self.lock.wait()

    def finished(self, build: Build) -> None:
        with self.lock:
            self.done.add(build.name)
            self.lock.notify_all()

    def fail(self, problem: BaseException) -> None:
        with self.lock:
            self.failed = self.failed or problem
            self.lock.notify_all()


def run_builds(connections: Sequence[psycopg.Connection[Any]], builds: Sequence[Build], setup: Sequence[str]) -> None:
    """Run ``builds`` on ``connections`` (autocommit) side by side, each as one transaction that commits at once,
    after its predecessors, starting with ``setup`` (SET LOCAL statements); the first failure is raised once
    every connection has stopped."""
    schedule = _Schedule(list(builds))

    def work(conn: psycopg.Connection[Any]) -> None:
        while (build := schedule.next()) is not None:
            try:
                with conn.transaction():
                    for statement in [*setup, *build.statements]:
                        conn.execute(statement)
            except BaseException as problem:
                schedule.fail(problem)
                return
            schedule.finished(build)

    threads = [threading.Thread(target=work, args=(conn,), name=f"acr-load-{n}") for n, conn in enumerate(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if schedule.failed is not None:
        raise schedule.failed


class StagedLoad:
    """The staging tables of one initial load and the connection that loads them (``loader``, its own
    transaction from the first row to ``commit_rows``). Made by ``begin``; ended by ``close`` in every case."""

    def __init__(self, pool: ConnectionPool[Any], loader: psycopg.Connection[Any], indexes: list[Index]):
        self._pool = pool
        self.loader = loader
        self.indexes = indexes
        self._sequences: dict[str, str] = {}

    @classmethod
    def begin(cls, pool: ConnectionPool[Any], lock_wait: str) -> StagedLoad | None:
        """Take the import lock and make empty staging tables (dropping any a killed load left), committed; None
        when another load is staging, the tables are not swappable or another transaction holds them for longer
        than ``lock_wait``. Call before locking the store's tables (the staging tables are made from them)."""
        loader = pool.getconn()
        try:
            if loader.execute(_TRY_IMPORT_LOCK).fetchone() != (True,):
                pool.putconn(loader)
                return None
        except BaseException:
            pool.putconn(loader)
            raise
        load = cls(pool, loader, [])
        try:
            drop_leftovers(loader)
            if loader.execute(_NOT_SWAPPABLE).fetchall():
                load.close()
                return None
            with loader.transaction():
                load.indexes = [Index(*row) for row in loader.execute(_INDEXES).fetchall()]
                loader.execute(f"SET LOCAL lock_timeout = '{lock_wait}'")
                for table in TABLES:
                    loader.execute(
                        f"CREATE TABLE {staged(table)} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES) "
                        f"WITH {_staging_options(table)}"
                    )
                    sequence = loader.execute(_SEQUENCE, (table,)).fetchone()
                    if sequence is not None and sequence[0] is not None:
                        load._sequences[table] = str(sequence[0]).rsplit(".", 1)[-1]
        except errors.LockNotAvailable:
            load.close()
            return None
        except BaseException:
            load.close()
            raise
        loader.execute("BEGIN")  # the load's transaction (each chunk in a savepoint of it)
        # (idle between chunks, and while the store's transaction settles: a server's idle timeout must not end it)
        loader.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        return load

    def builds(self, candidates: Callable[[str, str], str]) -> list[Build]:
        """The end of the load, on the staging tables, in the order the two connections take them: the candidates
        (``candidates(contacts, candidates)``: the statement that fills them; one sort, the longest build), then
        the candidates' indexes once they are filled (``_widest_first``) and the contacts' meanwhile (``_NO_WORKERS``), keys first
        (keys as unique indexes, made constraints at the swap). The candidates do not wait for the contacts' key:
        a key given twice fails its build, and the builds are undone (``undo_builds``) and made again once settled.

        (In two halves by customer, on both connections, the candidates took longer on two cores: each half read
        every contact, and the contacts' builds, which fit beside the one sort, came after.)"""
        fill = Build("candidates", [candidates(staged("contacts"), staged("metric_contacts"))])
        metric = [index for index in self.indexes if index.table == "metric_contacts"]
        contacts = [index for index in self.indexes if index.table == "contacts"]
        return [
            fill,
            *(
                Build(index.name, [index.staged_definition()], frozenset({fill.name}))
                for index in _widest_first(metric)
            ),
            *(Build(index.name, [_NO_WORKERS, index.staged_definition()]) for index in _keys_first(contacts)),
        ]

    def undo_builds(self) -> list[str]:
        """Statements that take the staging tables back to their rows (no index, no candidate)."""
        drops = ", ".join(staged(index.name) for index in self.indexes)
        return [f"DROP INDEX IF EXISTS {drops}", f"TRUNCATE {staged('metric_contacts')}"]

    def commit_rows(self) -> None:
        self.loader.execute(f"{NO_DISK_WAIT}; COMMIT")

    def swap_statements(self) -> list[str]:
        """Statements, for the transaction that holds the store's two tables, that put the staging tables in
        their place: the (empty) tables dropped, the staging ones renamed, with their sequences, indexes and key
        constraints."""
        statements = [f"DROP TABLE {', '.join(TABLES)}"]
        for table in TABLES:
            statements.append(f"ALTER TABLE {staged(table)} RENAME TO {table}")
            statements.append(f"ALTER TABLE {table} RESET {_VACUUM}")
            if table in self._sequences:
                statements.append(f"ALTER SEQUENCE {staged(self._sequences[table])} RENAME TO {self._sequences[table]}")
        for index in self.indexes:
            statements.append(f"ALTER INDEX {staged(index.name)} RENAME TO {index.name}")
            if index.constraint is not None:
                kind = _CONSTRAINT_KINDS[index.constraint]
                statements.append(
                    f"ALTER TABLE {index.table} ADD CONSTRAINT {index.name} {kind} USING INDEX {index.name}"
                )
        return statements

    def close(self) -> None:
        """Give the loader back (its transaction rolled back if still open), dropping what is left of the staging
        tables (nothing once swapped in), and release the import lock. Call once the store's transaction ended."""
        loader = self.loader
        try:
            if loader.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                loader.execute("ROLLBACK")
            drop_leftovers(loader)
            loader.execute(_IMPORT_UNLOCK)
        except psycopg.Error as problem:  # (the load's outcome stands; its session, and so its lock, ends here)
            log.warning("import: staging tables left for the next store to open to drop (%s)", problem)
            loader.close()
        finally:
            self._pool.putconn(loader)


def _widest_first(indexes: list[Index]) -> list[Index]:
    """The candidates' indexes, built on two connections once they are filled: the longest builds first (the
    widest of all rows, then partial ones, keys last), so that neither connection is left with a long one alone
    at the end (time first, 0.6 s sooner than agent first for 1,000,000 contacts)."""
    return sorted(indexes, key=lambda index: (index.constraint is not None, index.partial, -index.columns, index.name))


def _keys_first(indexes: list[Index]) -> list[Index]:
    """Unique keys (the one that finds keys given twice) first, then the primary key, then the others."""
    return sorted(indexes, key=lambda index: (index.constraint is None, index.constraint == "p"))


def drop_leftovers_if_idle(conn: psycopg.Connection[Any]) -> None:
    """Drop the staging tables a killed load left, unless a load is staging now (its import lock is held). Called
    when a store opens and before an erasure or a purge: a killed load's tables hold its contacts, raws included,
    and must not outlive it (no later load into a store with contacts would drop them)."""
    if conn.execute(_ANY_LEFT, [staged(table) for table in TABLES]).fetchone() != (True,):
        return
    if conn.execute(_TRY_IMPORT_LOCK).fetchone() != (True,):
        return
    try:
        drop_leftovers(conn)
    finally:
        conn.execute(_IMPORT_UNLOCK)


def drop_leftovers(conn: psycopg.Connection[Any]) -> None:
    """Drop the staging tables (with their indexes and sequences) that a load left; call under the import lock."""
    conn.execute(f"DROP TABLE IF EXISTS {', '.join(staged(table) for table in TABLES)}")

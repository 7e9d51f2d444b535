"""How the SQLite backend transacts: writes in an IMMEDIATE transaction, committed on success, else rolled back;
reads that must see one instant in a read snapshot."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from bot.storage.errors import StoreUnavailable
from bot.storage.sqlite_errors import explain


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """IMMEDIATE takes the write lock up front, so a writer waits (busy timeout) instead of failing mid-way.

    A busy database, a full disk and the like raise ``StoreUnavailable`` naming the file (nothing was written).
    SQLite itself rolls back after some errors (a full disk); then there is nothing left to roll back, and
    trying would hide the real error behind "cannot rollback - no transaction is active".
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as problem:
        if (unavailable := _translated(conn, problem)) is not None:
            raise unavailable from None
        raise
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as failure:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(failure, sqlite3.Error) and (unavailable := _translated(conn, failure)) is not None:
            raise unavailable from failure
        raise


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction of ``conn`` for the block: everything read in it sees the same instant (and, in WAL
    mode, keeps the log from being started over until it ends: keep it short)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def _translated(conn: sqlite3.Connection, problem: sqlite3.Error) -> StoreUnavailable | None:
    try:
        path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "") or "?"
    except sqlite3.Error:
        path = "?"
    return explain(problem, path)

"""The scheduler's tables on SQLite (the SQL is ``sql_schedules``'s, shared with PostgreSQL).

Shares the contact store's connections: writes go through its single writer connection under its lock (one
transaction each), reads through a reader connection of its pool.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from bot.storage.sql_schedules import SUBSCRIPTION_COLUMNS, Executes, SQLSchedules, SubscriptionValues
from bot.storage.sqlite_transactions import immediate_transaction


class SQLiteSchedules(SQLSchedules):
    """``ScheduleStore`` and ``Outbox`` on the contact store's SQLite file."""

    INSERTION_ORDER = "rowid"
    SAME = "IS"

    def __init__(
        self,
        writer: sqlite3.Connection,
        write_lock: threading.RLock,
        reader: Callable[[], AbstractContextManager[sqlite3.Connection]],
    ):
        self._writer = writer
        self._lock = write_lock
        self._reader = reader

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, immediate_transaction(self._writer) as conn:
            yield conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reader() as conn:
            return conn.execute(sql, params).fetchall()

    def _upsert_subscription(self, conn: Executes, values: SubscriptionValues) -> tuple[tuple[Any, ...], bool]:
        # (the single writer holds the database's write lock: nobody adds the same one in between)
        channel, scope, local_time, zone, weekdays_only, created_by, now_us, cadence, cadence_day = values
        key = (channel, scope, cadence)
        existing = conn.execute(
            "SELECT id FROM subscriptions WHERE channel = ? AND scope = ? AND cadence = ?", key
        ).fetchone()
        if existing is None:
            conn.execute(
                "INSERT INTO subscriptions (channel, scope, local_time, zone, weekdays_only, created_by, created_us,"
                " cadence, cadence_day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        else:
            conn.execute(
                "UPDATE subscriptions SET local_time = ?, zone = ?, weekdays_only = ?, created_by = ?, "
                "created_us = ?, cadence_day = ? WHERE id = ?",
                (local_time, zone, weekdays_only, created_by, now_us, cadence_day, existing[0]),
            )
        row = conn.execute(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE channel = ? AND scope = ? AND cadence = ?", key
        ).fetchone()
        return row, existing is None

    def _inserted_id(self, conn: Executes, insert: str, params: Sequence[Any]) -> int:
        cursor = conn.execute(insert, params)
        assert isinstance(cursor, sqlite3.Cursor) and cursor.lastrowid is not None
        return cursor.lastrowid

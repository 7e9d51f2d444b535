"""The scheduler's tables on PostgreSQL (the SQL is ``sql_schedules``'s, shared with SQLite).

Each call is one transaction on a pooled connection, so several server processes share the tables safely: a
message is claimed by exactly one of them and stored once however often it is enqueued (``sql_schedules``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from bot.storage.sql_schedules import SUBSCRIPTION_COLUMNS, Executes, SQLSchedules, SubscriptionValues


class PostgresSchedules(SQLSchedules):
    """``ScheduleStore`` and ``Outbox`` on the contact store's database."""

    INSERTION_ORDER = "seq"
    SAME = "IS NOT DISTINCT FROM"

    def __init__(self, pool: ConnectionPool[Any]):
        self._pool = pool

    @contextmanager
    def _write(self) -> Iterator[_Placeholders]:
        with self._pool.connection() as conn, conn.transaction():
            yield _Placeholders(conn)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            return conn.execute(_percent(sql), params).fetchall()

    def _upsert_subscription(self, conn: Executes, values: SubscriptionValues) -> tuple[tuple[Any, ...], bool]:
        # One statement, so two processes adding the same subscription at once store it once (xmax = 0: inserted).
        row = conn.execute(
            f"""INSERT INTO subscriptions (channel, scope, local_time, zone, weekdays_only, created_by, created_us,
                cadence, cadence_day)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (channel, scope, cadence) DO UPDATE SET local_time = excluded.local_time,
                zone = excluded.zone, weekdays_only = excluded.weekdays_only, created_by = excluded.created_by,
                created_us = excluded.created_us, cadence_day = excluded.cadence_day
            RETURNING {SUBSCRIPTION_COLUMNS}, (xmax = 0)""",
            values,
        ).fetchone()
        return row[:-1], bool(row[-1])

    def _inserted_id(self, conn: Executes, insert: str, params: Sequence[Any]) -> int:
        return int(conn.execute(f"{insert} RETURNING id", params).fetchone()[0])


class _Placeholders:
    """A connection in a transaction that runs the shared SQL (``?`` placeholders) with psycopg's ``%s``."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]):
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[tuple[Any, ...]]:
        return self._conn.execute(_percent(sql), params)


@lru_cache(maxsize=64)
def _percent(sql: str) -> str:
    """``?`` -> ``%s`` (the shared SQL has no ``%`` and no ``?`` in a literal)."""
    assert "%" not in sql, sql
    return sql.replace("?", "%s")

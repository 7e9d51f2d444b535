"""The scheduler's tables on PostgreSQL: subscriptions, alert rules with their state, and the outbox.

Each call is one transaction on a pooled connection. ``begin_attempt`` is a single conditional UPDATE, so of
several processes claiming one message exactly one succeeds; enqueueing is ``ON CONFLICT DO NOTHING`` on the
key, so a message written twice (by two processes, or by a scheduler that took over) is stored once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from bot.storage.schedules import (
    AlertRule,
    AlertState,
    Cadence,
    OutboxEntry,
    OutboxMessage,
    Subscription,
    entry_from_row,
    rule_from_row,
    subscription_from_row,
)

_RULE_COLUMNS = (
    "id, metric, threshold, window_us, last_days, scope, min_matured, channel, strict, created_by, created_us, "
    "snoozed_until_us, firing, episode, fired_us, notified_us, acknowledged_by, last_rate, last_matured, evaluated_us"
)
_SUBSCRIPTION_COLUMNS = (
    "id, channel, scope, local_time, zone, weekdays_only, created_by, created_us, cadence, cadence_day"
)
_OUTBOX_COLUMNS = (
    "key, channel, text, blocks, thread_key, file, filename, title, status, attempts, next_attempt_us, created_us, "
    "ts, sent_us, last_error, claimed_by"
)

Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresSchedules:
    """``ScheduleStore`` and ``Outbox`` on the contact store's database."""

    def __init__(self, pool: ConnectionPool[Any]):
        self._pool = pool

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    # --- subscriptions ---------------------------------------------------------------------------------

    def save_subscription(
        self,
        channel: str,
        scope: str,
        local_time: str,
        zone: str | None,
        weekdays_only: bool,
        created_by: str | None,
        now_us: int,
        cadence: Cadence = "daily",
        cadence_day: int | None = None,
    ) -> tuple[Subscription, bool]:
        with self._write() as conn:
            # A changed time counts from now: an earlier occurrence today is not "missed".
            row = conn.execute(
                f"""INSERT INTO subscriptions (channel, scope, local_time, zone, weekdays_only, created_by, created_us,
                    cadence, cadence_day)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (channel, scope, cadence) DO UPDATE SET local_time = excluded.local_time,
                    zone = excluded.zone, weekdays_only = excluded.weekdays_only, created_by = excluded.created_by,
                    created_us = excluded.created_us, cadence_day = excluded.cadence_day
                RETURNING {_SUBSCRIPTION_COLUMNS}, (xmax = 0)""",
                (channel, scope, local_time, zone, weekdays_only, created_by, now_us, cadence, cadence_day),
            ).fetchone()
        assert row is not None
        return subscription_from_row(row[:-1]), bool(row[-1])

    def remove_subscription(self, subscription_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM subscriptions WHERE id = %s", (subscription_id,)).rowcount > 0

    def list_subscriptions(self) -> list[Subscription]:
        return [
            subscription_from_row(r)
            for r in self._read(f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id")
        ]

    # --- alert rules -----------------------------------------------------------------------------------

    def add_alert_rule(
        self,
        metric: str,
        threshold: float,
        window_us: int,
        last_days: int,
        scope: str,
        min_matured: int,
        channel: str,
        strict: bool,
        created_by: str | None,
        now_us: int,
    ) -> AlertRule:
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO alert_rules (metric, threshold, window_us, last_days, scope, min_matured, channel, "
                f"strict, created_by, created_us) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_RULE_COLUMNS}",
                (metric, threshold, window_us, last_days, scope, min_matured, channel, strict, created_by, now_us),
            ).fetchone()
        assert row is not None
        return rule_from_row(row)

    def remove_alert_rule(self, rule_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM alert_rules WHERE id = %s", (rule_id,)).rowcount > 0

    def alert_rule(self, rule_id: int) -> AlertRule | None:
        rows = self._read(f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE id = %s", (rule_id,))
        return rule_from_row(rows[0]) if rows else None

    def list_alert_rules(self) -> list[AlertRule]:
        return [rule_from_row(row) for row in self._read(f"SELECT {_RULE_COLUMNS} FROM alert_rules ORDER BY id")]

    def snooze_alert_rule(self, rule_id: int, until_us: int | None) -> bool:
        with self._write() as conn:
            cursor = conn.execute("UPDATE alert_rules SET snoozed_until_us = %s WHERE id = %s", (until_us, rule_id))
            return cursor.rowcount > 0

    def acknowledge_alert(self, rule_id: int, episode: int, user: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE alert_rules SET acknowledged_by = %s WHERE id = %s AND episode = %s AND firing",
                (user, rule_id, episode),
            )
            return cursor.rowcount > 0

    def save_alert_evaluation(
        self, rule_id: int, state: AlertState, messages: Sequence[OutboxMessage], now_us: int
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE alert_rules SET firing = %s, episode = %s, fired_us = %s, notified_us = %s, "
                "acknowledged_by = %s, last_rate = %s, last_matured = %s, evaluated_us = %s WHERE id = %s",
                (
                    state.firing,
                    state.episode,
                    state.fired_us,
                    state.notified_us,
                    state.acknowledged_by,
                    state.last_rate,
                    state.last_matured,
                    state.evaluated_us,
                    rule_id,
                ),
            )
            _insert_messages(conn, messages, now_us)

    # --- outbox ----------------------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[OutboxMessage], now_us: int) -> list[bool]:
        with self._write() as conn:
            return _insert_messages(conn, messages, now_us)

    def outbox_entry(self, key: str) -> OutboxEntry | None:
        rows = self._read(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE key = %s", (key,))
        return entry_from_row(rows[0]) if rows else None

    def due_messages(self, now_us: int, limit: int = 100) -> list[OutboxEntry]:
        rows = self._read(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_us <= %s "
            "ORDER BY created_us, seq LIMIT %s",
            (now_us, limit),
        )
        return [entry_from_row(row) for row in rows]

    def in_doubt_messages(self) -> list[OutboxEntry]:
        rows = self._read(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = 'sending' ORDER BY created_us, seq")
        return [entry_from_row(row) for row in rows]

    def begin_attempt(self, key: str, now_us: int, owner: str | None = None) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1, next_attempt_us = %s, claimed_by = %s "
                "WHERE key = %s AND status = 'pending'",
                (now_us, owner, key),
            )
            return cursor.rowcount > 0

    def release_claim(self, key: str, owner: str | None, next_attempt_us: int, error: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_us = %s, last_error = %s "
                "WHERE key = %s AND status = 'sending' AND claimed_by IS NOT DISTINCT FROM %s",
                (next_attempt_us, error, key, owner),
            )
            return cursor.rowcount > 0

    def mark_sent(self, key: str, ts: str | None, now_us: int) -> None:
        with self._write() as conn:
            conn.execute(
                # the bytes of an uploaded file are not kept: the record of the upload is enough
                "UPDATE outbox SET status = 'sent', ts = %s, sent_us = %s, last_error = NULL, file = NULL "
                "WHERE key = %s",
                (ts, now_us, key),
            )

    def mark_retry(self, key: str, next_attempt_us: int, error: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_us = %s, last_error = %s WHERE key = %s",
                (next_attempt_us, error, key),
            )

    def mark_failed(self, key: str, error: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE outbox SET status = 'failed', last_error = %s WHERE key = %s", (error, key))


def _insert_messages(conn: Connection, messages: Sequence[OutboxMessage], now_us: int) -> list[bool]:
    fresh: list[bool] = []
    for m in messages:
        cursor = conn.execute(
            "INSERT INTO outbox (key, channel, text, blocks, thread_key, file, filename, title, next_attempt_us, "
            "created_us) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
            (
                m.key,
                m.channel,
                m.text,
                None if m.blocks is None else json.dumps(m.blocks, ensure_ascii=False),
                m.thread_key,
                m.file,
                m.filename,
                m.title,
                now_us,
                now_us,
            ),
        )
        fresh.append(cursor.rowcount > 0)
    return fresh

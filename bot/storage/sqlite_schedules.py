"""SQL for the scheduler: subscriptions, alert rules and their state, and the outbox (``bot.storage.schedules``).

Shares the contact store's connections: writes go through its single writer connection under its lock (one
transaction each), reads through a reader connection of its pool.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

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
from bot.storage.sqlite_transactions import immediate_transaction

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
)  # claimed_by: added by the migration m_outbox_claims


class SQLiteSchedules:
    """``ScheduleStore`` and ``Outbox`` on the contact store's SQLite file."""

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
        key = (channel, scope, cadence)
        with self._write() as conn:
            existing = conn.execute(
                "SELECT id FROM subscriptions WHERE channel = ? AND scope = ? AND cadence = ?", key
            ).fetchone()
            if existing is None:
                conn.execute(
                    "INSERT INTO subscriptions (channel, scope, local_time, zone, weekdays_only, created_by, created_us,"
                    " cadence, cadence_day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (channel, scope, local_time, zone, int(weekdays_only), created_by, now_us, cadence, cadence_day),
                )
            else:  # a changed time counts from now: an earlier occurrence today is not "missed"
                conn.execute(
                    "UPDATE subscriptions SET local_time = ?, zone = ?, weekdays_only = ?, created_by = ?, "
                    "created_us = ?, cadence_day = ? WHERE id = ?",
                    (local_time, zone, int(weekdays_only), created_by, now_us, cadence_day, existing[0]),
                )
            row = conn.execute(
                f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE channel = ? AND scope = ? AND cadence = ?",
                key,
            ).fetchone()
        return subscription_from_row(row), existing is None

    def remove_subscription(self, subscription_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,)).rowcount > 0

    def list_subscriptions(self) -> list[Subscription]:
        with self._reader() as conn:
            rows = conn.execute(f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id").fetchall()
        return [subscription_from_row(row) for row in rows]

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
            cursor = conn.execute(
                "INSERT INTO alert_rules (metric, threshold, window_us, last_days, scope, min_matured, channel, "
                "strict, created_by, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (metric, threshold, window_us, last_days, scope, min_matured, channel, int(strict), created_by, now_us),
            )
            row = conn.execute(f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return rule_from_row(row)

    def remove_alert_rule(self, rule_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,)).rowcount > 0

    def alert_rule(self, rule_id: int) -> AlertRule | None:
        with self._reader() as conn:
            row = conn.execute(f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE id = ?", (rule_id,)).fetchone()
        return None if row is None else rule_from_row(row)

    def list_alert_rules(self) -> list[AlertRule]:
        with self._reader() as conn:
            rows = conn.execute(f"SELECT {_RULE_COLUMNS} FROM alert_rules ORDER BY id").fetchall()
        return [rule_from_row(row) for row in rows]

    def snooze_alert_rule(self, rule_id: int, until_us: int | None) -> bool:
        with self._write() as conn:
            cursor = conn.execute("UPDATE alert_rules SET snoozed_until_us = ? WHERE id = ?", (until_us, rule_id))
            return cursor.rowcount > 0

    def acknowledge_alert(self, rule_id: int, episode: int, user: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE alert_rules SET acknowledged_by = ? WHERE id = ? AND episode = ? AND firing = 1",
                (user, rule_id, episode),
            )
            return cursor.rowcount > 0

    def save_alert_evaluation(
        self, rule_id: int, state: AlertState, messages: Sequence[OutboxMessage], now_us: int
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE alert_rules SET firing = ?, episode = ?, fired_us = ?, notified_us = ?, acknowledged_by = ?, "
                "last_rate = ?, last_matured = ?, evaluated_us = ? WHERE id = ?",
                (
                    int(state.firing),
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
        with self._reader() as conn:
            row = conn.execute(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE key = ?", (key,)).fetchone()
        return None if row is None else entry_from_row(row)

    def due_messages(self, now_us: int, limit: int = 100) -> list[OutboxEntry]:
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_us <= ? "
                "ORDER BY created_us, rowid LIMIT ?",
                (now_us, limit),
            ).fetchall()
        return [entry_from_row(row) for row in rows]

    def in_doubt_messages(self) -> list[OutboxEntry]:
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = 'sending' ORDER BY created_us, rowid"
            ).fetchall()
        return [entry_from_row(row) for row in rows]

    def begin_attempt(self, key: str, now_us: int, owner: str | None = None) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1, next_attempt_us = ?, claimed_by = ? "
                "WHERE key = ? AND status = 'pending'",
                (now_us, owner, key),
            )
            return cursor.rowcount > 0

    def release_claim(self, key: str, owner: str | None, next_attempt_us: int, error: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_us = ?, last_error = ? "
                "WHERE key = ? AND status = 'sending' AND claimed_by IS ?",
                (next_attempt_us, error, key, owner),
            )
            return cursor.rowcount > 0

    def mark_sent(self, key: str, ts: str | None, now_us: int) -> None:
        with self._write() as conn:
            conn.execute(
                # the bytes of an uploaded file are not kept: the record of the upload is enough
                "UPDATE outbox SET status = 'sent', ts = ?, sent_us = ?, last_error = NULL, file = NULL WHERE key = ?",
                (ts, now_us, key),
            )

    def mark_retry(self, key: str, next_attempt_us: int, error: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_us = ?, last_error = ? WHERE key = ?",
                (next_attempt_us, error, key),
            )

    def mark_failed(self, key: str, error: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE outbox SET status = 'failed', last_error = ? WHERE key = ?", (error, key))


def _insert_messages(conn: sqlite3.Connection, messages: Sequence[OutboxMessage], now_us: int) -> list[bool]:
    fresh: list[bool] = []
    for m in messages:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO outbox (key, channel, text, blocks, thread_key, file, filename, title, "
            "next_attempt_us, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

"""The scheduler's tables in SQL that SQLite and PostgreSQL both run: subscriptions, alert rules with their state,
and the outbox (``bot.storage.schedules`` has the Protocols and the records).

A backend gives a transaction (``_write``), a read (``_read``), and its own words for what the two say
differently: how a subscription is added or updated, the id of a row just inserted, the outbox's insertion order
and null-safe equality. The SQL is written with ``?`` placeholders (the PostgreSQL backend turns them into ``%s``).

Every write is one transaction. ``begin_attempt`` is a single conditional UPDATE, so of several processes (or
threads) claiming one message exactly one succeeds; enqueueing is ``ON CONFLICT DO NOTHING`` on the key, so a
message written twice (by two processes, or by a scheduler that took over) is stored once.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

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

RULE_COLUMNS = (
    "id, metric, threshold, window_us, last_days, scope, min_matured, channel, strict, created_by, created_us, "
    "snoozed_until_us, firing, episode, fired_us, notified_us, acknowledged_by, last_rate, last_matured, evaluated_us"
)
SUBSCRIPTION_COLUMNS = (
    "id, channel, scope, local_time, zone, weekdays_only, created_by, created_us, cadence, cadence_day"
)
OUTBOX_COLUMNS = (
    "key, channel, text, blocks, thread_key, file, filename, title, status, attempts, next_attempt_us, created_us, "
    "ts, sent_us, last_error, claimed_by"
)
# A subscription's values in the order of its columns after ``id``.
SubscriptionValues = tuple[str, str, str, str | None, bool, str | None, int, Cadence, int | None]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Executes(Protocol):
    """A connection in a write transaction: SQL with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...


class SQLSchedules(ABC):
    """``ScheduleStore`` and ``Outbox`` in one SQL; a backend's subclass gives its connections and dialect."""

    INSERTION_ORDER: ClassVar[str]  # the outbox column that orders rows added in the same microsecond
    SAME: ClassVar[str]  # null-safe equality (``claimed_by`` may be NULL)

    @abstractmethod
    def _write(self) -> AbstractContextManager[Executes]:
        """One write transaction."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query, read outside any write transaction."""

    @abstractmethod
    def _upsert_subscription(self, conn: Executes, values: SubscriptionValues) -> tuple[tuple[Any, ...], bool]:
        """Add the subscription of ``values``' (channel, scope, cadence), or update that one's time (which then
        counts from now: an earlier occurrence today is not "missed"); its row, and True when it is new."""

    @abstractmethod
    def _inserted_id(self, conn: Executes, insert: str, params: Sequence[Any]) -> int:
        """Run ``insert`` (one row) and return the row's new ``id``."""

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
        values = (channel, scope, local_time, zone, weekdays_only, created_by, now_us, cadence, cadence_day)
        with self._write() as conn:
            row, created = self._upsert_subscription(conn, values)
        return subscription_from_row(row), created

    def remove_subscription(self, subscription_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,)).rowcount > 0

    def list_subscriptions(self) -> list[Subscription]:
        return [
            subscription_from_row(r)
            for r in self._read(f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY id")
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
            rule_id = self._inserted_id(
                conn,
                "INSERT INTO alert_rules (metric, threshold, window_us, last_days, scope, min_matured, channel, "
                "strict, created_by, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (metric, threshold, window_us, last_days, scope, min_matured, channel, strict, created_by, now_us),
            )
            row = conn.execute(f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = ?", (rule_id,)).fetchone()
        return rule_from_row(row)

    def remove_alert_rule(self, rule_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,)).rowcount > 0

    def alert_rule(self, rule_id: int) -> AlertRule | None:
        rows = self._read(f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = ?", (rule_id,))
        return rule_from_row(rows[0]) if rows else None

    def list_alert_rules(self) -> list[AlertRule]:
        return [rule_from_row(row) for row in self._read(f"SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id")]

    def snooze_alert_rule(self, rule_id: int, until_us: int | None) -> bool:
        with self._write() as conn:
            cursor = conn.execute("UPDATE alert_rules SET snoozed_until_us = ? WHERE id = ?", (until_us, rule_id))
            return cursor.rowcount > 0

    def acknowledge_alert(self, rule_id: int, episode: int, user: str) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE alert_rules SET acknowledged_by = ? WHERE id = ? AND episode = ? AND firing",
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
        rows = self._read(f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE key = ?", (key,))
        return entry_from_row(rows[0]) if rows else None

    def due_messages(self, now_us: int, limit: int = 100) -> list[OutboxEntry]:
        rows = self._read(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_us <= ? "
            f"ORDER BY created_us, {self.INSERTION_ORDER} LIMIT ?",
            (now_us, limit),
        )
        return [entry_from_row(row) for row in rows]

    def in_doubt_messages(self) -> list[OutboxEntry]:
        rows = self._read(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'sending' ORDER BY created_us, {self.INSERTION_ORDER}"
        )
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
                f"WHERE key = ? AND status = 'sending' AND claimed_by {self.SAME} ?",
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


def _insert_messages(conn: Executes, messages: Sequence[OutboxMessage], now_us: int) -> list[bool]:
    fresh: list[bool] = []
    for m in messages:
        cursor = conn.execute(
            "INSERT INTO outbox (key, channel, text, blocks, thread_key, file, filename, title, next_attempt_us, "
            "created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
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

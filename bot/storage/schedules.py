"""What the scheduler keeps: digest subscriptions, alert rules with their state, and the outbox of messages.

The interfaces (``ScheduleStore``, ``Outbox``) and their records. The SQL both backends run is in
``sql_schedules.py`` (with ``sqlite_schedules.py`` and ``postgres_schedules.py`` beside it); callers only see
these Protocols, so another backend can be added without touching them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from metrics.query import Dimension, Metric

OutboxStatus = Literal["pending", "sending", "sent", "failed"]
Cadence = Literal["daily", "weekly", "monthly"]
CADENCES: tuple[Cadence, ...] = ("daily", "weekly", "monthly")
SCOPE_DIMENSIONS: tuple[Dimension, ...] = ("team", "queue", "channel")


def scope_filters(scope: str) -> tuple[tuple[Dimension, str], ...]:
    """``team:billing`` -> ``(("team", "billing"),)``; ``""`` (everyone) -> ``()``."""
    if not scope:
        return ()
    dimension, _, value = scope.partition(":")
    if dimension not in SCOPE_DIMENSIONS or not value:
        raise ValueError(f"bad scope {scope!r}")
    return ((dimension, value),)


def scope_label(scope: str) -> str:
    """How a scope reads in a message: ``team billing`` or ``all teams``."""
    filters = scope_filters(scope)
    return " ".join(f"{d} {v}" for d, v in filters) if filters else "all teams"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A digest for ``channel`` about ``scope`` at ``local_time`` (HH:MM) in ``zone`` (None: BOT_TIMEZONE): daily
    (``weekdays_only``: Monday to Friday), weekly on ``cadence_day`` (0 = Monday) or monthly on day ``cadence_day``.
    A channel has at most one digest of each cadence per scope."""

    id: int
    channel: str
    scope: str  # "" (everyone) or "team:billing"
    local_time: str
    zone: str | None
    weekdays_only: bool
    created_by: str | None
    created_us: int
    cadence: Cadence = "daily"
    cadence_day: int | None = None


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where a rule stands. ``episode`` counts the times it started firing; messages of one episode share a thread."""

    firing: bool = False
    episode: int = 0
    fired_us: int | None = None
    notified_us: int | None = None  # the last fire or reminder message
    acknowledged_by: str | None = None  # for the current episode: no more reminders
    last_rate: float | None = None
    last_matured: int = 0
    evaluated_us: int | None = None


@dataclass(frozen=True, slots=True)
class AlertRule:
    """``metric`` below ``threshold`` (0..1) over ``last_days`` with repeat window ``window_us``, in ``scope``."""

    id: int
    metric: Metric
    threshold: float
    window_us: int
    last_days: int
    scope: str
    min_matured: int
    channel: str
    strict: bool
    created_by: str | None
    created_us: int
    snoozed_until_us: int | None = None
    state: AlertState = field(default_factory=AlertState)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message to deliver, identified by ``key`` (the same key is never delivered twice).

    ``thread_key``: post as a reply in the thread of that (earlier) message. ``file``: upload this file
    (with ``text`` as its comment) instead of posting a message.
    """

    key: str
    channel: str
    text: str
    blocks: list[dict[str, Any]] | None = None
    thread_key: str | None = None
    file: bytes | None = None
    filename: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A stored message with its delivery state; ``ts`` is Slack's id of the posted message."""

    message: OutboxMessage
    status: OutboxStatus
    attempts: int
    next_attempt_us: int
    created_us: int
    ts: str | None = None
    sent_us: int | None = None
    last_error: str | None = None
    claimed_by: str | None = None  # the process that claimed it last (``begin_attempt``'s ``owner``)

    @property
    def key(self) -> str:
        return self.message.key


class Outbox(Protocol):
    """Messages written before they are posted: delivered at least once by retrying, at most once by key.

    Every write is one transaction of its own; instants are µs since the epoch, UTC.
    """

    def enqueue(self, messages: Sequence[OutboxMessage], now_us: int) -> list[bool]:
        """Store all of ``messages`` atomically; for each, True if new, False if its key already existed."""
        ...

    def outbox_entry(self, key: str) -> OutboxEntry | None:
        """The stored message ``key`` with its delivery state, or None."""
        ...

    def due_messages(self, now_us: int, limit: int = 100) -> list[OutboxEntry]:
        """Pending messages whose next attempt is due, oldest first."""
        ...

    def in_doubt_messages(self) -> list[OutboxEntry]:
        """Messages whose delivery started but was never recorded (the process stopped mid-post)."""
        ...

    def begin_attempt(self, key: str, now_us: int, owner: str | None = None) -> bool:
        """Claim pending ``key`` for sending (before the Slack call), counting the attempt and recording which
        process claims it (``owner``, see ``bot.scheduler.delivery.process_token``); False if it is not pending
        (another process or thread claimed it)."""
        ...

    def release_claim(self, key: str, owner: str | None, next_attempt_us: int, error: str) -> bool:
        """Make ``key`` pending again if it is still "sending" under ``owner``'s claim (a claim whose process is
        gone); False if anything changed it meanwhile (another process recovered it first)."""
        ...

    def mark_sent(self, key: str, ts: str | None, now_us: int) -> None:
        """Record that ``key`` was posted (``ts``: Slack's id of the message); it is never sent again."""
        ...

    def mark_retry(self, key: str, next_attempt_us: int, error: str) -> None:
        """Put ``key`` back to pending, to be tried again at ``next_attempt_us``, noting why this attempt failed."""
        ...

    def mark_failed(self, key: str, error: str) -> None:
        """Give up on ``key`` for good (Slack refused it, e.g. channel_not_found); kept for the record."""
        ...


class SchedulerLease(Protocol):
    """Held by at most one process per database at a time; released when its process dies, however it dies."""

    def try_acquire(self) -> bool:
        """Take the lease if it is free; True while this process holds it (False once it was lost)."""
        ...

    def release(self) -> None: ...


class ScheduleStore(Protocol):
    """Subscriptions and alert rules (with their state). Every write is one transaction of its own."""

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
        """Add, or update the time of, the ``cadence`` digest of ``channel`` about ``scope``; True when it is new."""
        ...

    def remove_subscription(self, subscription_id: int) -> bool:
        """Delete the subscription; False when there is none with that id."""
        ...

    def list_subscriptions(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        ...

    def add_alert_rule(
        self,
        metric: Metric,
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
        """Store a new rule (not firing) and return it with its id. The caller has validated the values; the
        backend refuses (its integrity error) a metric other than acr/tier1 or a threshold outside (0, 1)."""
        ...

    def remove_alert_rule(self, rule_id: int) -> bool:
        """Delete the rule with its state; False when there is none with that id."""
        ...

    def alert_rule(self, rule_id: int) -> AlertRule | None:
        """The rule with its current state, or None."""
        ...

    def list_alert_rules(self) -> list[AlertRule]:
        """Every rule with its state, oldest first."""
        ...

    def snooze_alert_rule(self, rule_id: int, until_us: int | None) -> bool:
        """Quiet the rule until ``until_us`` (None: wake it now); False when there is no such rule."""
        ...

    def acknowledge_alert(self, rule_id: int, episode: int, user: str) -> bool:
        """Acknowledge the current episode (no more reminders for it); False if that episode is not firing."""
        ...

    def save_alert_evaluation(
        self, rule_id: int, state: AlertState, messages: Sequence[OutboxMessage], now_us: int
    ) -> None:
        """Store the rule's new state and enqueue its messages in one transaction (never one without the other)."""
        ...


# --- rows as every backend's SQL selects them (the columns in the order of the tables) --------------------


def subscription_from_row(row: Sequence[Any]) -> Subscription:
    sid, channel, scope, local_time, zone, weekdays_only, created_by, created_us, cadence, cadence_day = row
    return Subscription(
        sid, channel, scope, local_time, zone, bool(weekdays_only), created_by, created_us, cadence, cadence_day
    )


def rule_from_row(row: Sequence[Any]) -> AlertRule:
    (rid, metric, threshold, window_us, last_days, scope, min_matured, channel, strict, created_by, created_us,
     snoozed, firing, episode, fired_us, notified_us, acknowledged_by, last_rate, last_matured, evaluated_us) = row  # fmt: skip
    state = AlertState(
        bool(firing), episode, fired_us, notified_us, acknowledged_by, last_rate, last_matured, evaluated_us
    )
    return AlertRule(
        rid, metric, threshold, window_us, last_days, scope, min_matured, channel, bool(strict), created_by,
        created_us, snoozed, state,
    )  # fmt: skip


def entry_from_row(row: Sequence[Any]) -> OutboxEntry:
    (key, channel, text, blocks, thread_key, file, filename, title, status, attempts, next_attempt_us, created_us,
     ts, sent_us, last_error, claimed_by) = row  # fmt: skip
    message = OutboxMessage(
        key, channel, text, None if blocks is None else json.loads(blocks), thread_key,
        None if file is None else bytes(file), filename, title,
    )  # fmt: skip
    return OutboxEntry(message, status, attempts, next_attempt_us, created_us, ts, sent_us, last_error, claimed_by)

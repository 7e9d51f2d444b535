"""The SQLite schema, as recorded migrations (sqlite-utils ``Migrations``): applied in order, once each."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("acr-bot")


@migrations()
def m001_contacts(db: Database) -> None:
    """Contacts with their raw record, and the derived next repeat used by every metric.

    ``end_us`` and ``repeatable`` are generated from the record so they can never disagree with it;
    ``next_repeat_us`` is the start of the customer's first repeatable contact strictly after this one,
    kept up to date by the store on every write, so any window W is one comparison:
    repeat within W  <=>  next_repeat_us <= end_us + W.
    """
    db.execute(
        """
        CREATE TABLE contacts (
            pk INTEGER PRIMARY KEY,
            source TEXT NOT NULL,
            id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            agent TEXT,
            team TEXT,
            queue TEXT,
            reason TEXT,
            channel TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
            tier INTEGER NOT NULL CHECK (tier >= 1),
            escalated INTEGER NOT NULL,
            resolved INTEGER,
            parent_id TEXT,
            started_us INTEGER NOT NULL,
            ended_us INTEGER CHECK (ended_us >= started_us),
            raw TEXT NOT NULL,
            received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            end_us INTEGER GENERATED ALWAYS AS (coalesce(ended_us, started_us)) STORED,
            repeatable INTEGER GENERATED ALWAYS AS (direction = 'inbound' AND parent_id IS NULL) STORED,
            next_repeat_us INTEGER,
            UNIQUE (source, id)
        )
        """
    )
    db.execute("CREATE INDEX contacts_customer ON contacts (customer_id, repeatable, started_us)")
    db.execute("CREATE TABLE store_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("INSERT INTO store_stats (name, value) VALUES ('contacts', 0)")


@migrations()
def m_slack_links(db: Database) -> None:
    """Which agent a Slack user is: lets an agent ask about themselves (``/acr me``) and nobody else."""
    db.execute(
        """
        CREATE TABLE slack_links (
            slack_user_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            linked_by TEXT,
            linked_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        )
        """
    )
    db.execute("CREATE INDEX slack_links_agent ON slack_links (agent)")


@migrations()
def m_metric_rollups(db: Database) -> None:
    """Indexes that let a metric count candidates without touching the table, and the exact daily rollups
    (with the marks of days to rebuild) that answer whole days without counting contacts at all.
    See ``bot/storage/sqlite_metrics.py``."""
    from bot.storage.sqlite_metrics import SCHEMA

    for statement in SCHEMA:
        db.execute(statement)


@migrations()
def m_schedules(db: Database) -> None:
    """Digest subscriptions, alert rules with their state, and the outbox that makes every scheduled message
    exactly-once. See ``bot/storage/sqlite_schedules.py``."""
    from bot.storage.sqlite_schedules import SCHEMA

    for statement in SCHEMA:
        db.execute(statement)


@migrations()
def m_metric_hour_rollups(db: Database) -> None:
    """Hour buckets next to the day buckets, for the days those cannot answer (a period's edges, the day of
    as_of - W). The day rollups are marked as built for no zone, so the next refresh rebuilds both."""
    from bot.storage.sqlite_metrics import HOUR_SCHEMA

    for statement in HOUR_SCHEMA:
        db.execute(statement)


@migrations()
def m_metric_contacts(db: Database) -> None:
    """The candidates move to their own narrow table, with the derived next repeat: a write then changes a
    narrow row, not a wide contacts row (see ``METRIC_CONTACTS_SCHEMA``). Contacts keep no next repeat."""
    from bot.storage.sqlite_metrics import METRIC_CONTACTS_SCHEMA

    for statement in METRIC_CONTACTS_SCHEMA:
        db.execute(statement)

"""The SQLite schema, as recorded migrations (sqlite-utils ``Migrations``): applied in order, once each.

Each migration states its DDL as frozen text, here: a migration never imports a live constant, so changing
the code (a column list, a rule) can never silently change what an old migration did. A schema change is a
new migration at the end; the ones before it stay as they are.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("acr-bot")


def known_migrations() -> list[str]:
    """The names of every migration this program has (sqlite-utils keeps the list, without a public accessor)."""
    return [migration.name for migration in migrations._migrations]


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
    See ``bot/storage/sqlite_rollups.py``. (86400000000: microseconds in a day.)"""
    for statement in (
        # Counting from contacts: by time (any scope, breakdowns, edge days; covering, so a count never touches
        # the table) and by agent (the scope asked most). Partial: only candidates. (Both replaced by the
        # table of m_metric_contacts.)
        """CREATE INDEX contacts_candidates_time ON contacts
        (started_us, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel)
        WHERE direction = 'inbound' AND agent IS NOT NULL""",
        "CREATE INDEX contacts_candidates_agent ON contacts (agent, started_us) WHERE direction = 'inbound' AND agent IS NOT NULL",
        "CREATE TABLE metric_rollup_day (dim TEXT NOT NULL, day INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (dim, day)) WITHOUT ROWID",
        "CREATE TABLE metric_rollup_value (dim TEXT NOT NULL, value TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (dim, value)) WITHOUT ROWID",
        "CREATE TABLE metric_rollup_dirty (utc_day INTEGER PRIMARY KEY)",
        "CREATE TABLE metric_rollup_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TRIGGER contacts_rollup_dirty_update
        AFTER UPDATE OF customer_id, agent, team, queue, channel, direction, tier, escalated, resolved,
            parent_id, started_us, ended_us ON contacts
        BEGIN
            INSERT INTO metric_rollup_dirty (utc_day) SELECT old.started_us / 86400000000
            WHERE NOT EXISTS (SELECT 1 FROM metric_rollup_dirty WHERE utc_day = old.started_us / 86400000000);
        END""",
        """CREATE TRIGGER contacts_rollup_dirty_delete AFTER DELETE ON contacts
        BEGIN
            INSERT INTO metric_rollup_dirty (utc_day) SELECT old.started_us / 86400000000
            WHERE NOT EXISTS (SELECT 1 FROM metric_rollup_dirty WHERE utc_day = old.started_us / 86400000000);
        END""",
        "INSERT OR IGNORE INTO metric_rollup_dirty (utc_day) SELECT DISTINCT started_us / 86400000000 FROM contacts",
    ):
        db.execute(statement)


@migrations()
def m_schedules(db: Database) -> None:
    """Digest subscriptions, alert rules with their state, and the outbox that makes every scheduled message
    exactly-once. See ``bot/storage/sql_schedules.py``."""
    for statement in (
        """CREATE TABLE subscriptions (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        scope TEXT NOT NULL,
        local_time TEXT NOT NULL,
        zone TEXT,
        weekdays_only INTEGER NOT NULL,
        created_by TEXT,
        created_us INTEGER NOT NULL,
        UNIQUE (channel, scope)
    )""",
        """CREATE TABLE alert_rules (
        id INTEGER PRIMARY KEY,
        metric TEXT NOT NULL CHECK (metric IN ('acr', 'tier1')),
        threshold REAL NOT NULL CHECK (threshold > 0 AND threshold < 1),
        window_us INTEGER NOT NULL,
        last_days INTEGER NOT NULL,
        scope TEXT NOT NULL,
        min_matured INTEGER NOT NULL,
        channel TEXT NOT NULL,
        strict INTEGER NOT NULL,
        created_by TEXT,
        created_us INTEGER NOT NULL,
        snoozed_until_us INTEGER,
        firing INTEGER NOT NULL DEFAULT 0,
        episode INTEGER NOT NULL DEFAULT 0,
        fired_us INTEGER,
        notified_us INTEGER,
        acknowledged_by TEXT,
        last_rate REAL,
        last_matured INTEGER NOT NULL DEFAULT 0,
        evaluated_us INTEGER
    )""",
        """CREATE TABLE outbox (
        key TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        text TEXT NOT NULL,
        blocks TEXT,
        thread_key TEXT,
        file BLOB,
        filename TEXT,
        title TEXT,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_us INTEGER NOT NULL,
        created_us INTEGER NOT NULL,
        ts TEXT,
        sent_us INTEGER,
        last_error TEXT
    )""",
        "CREATE INDEX outbox_due ON outbox (status, next_attempt_us)",
    ):
        db.execute(statement)


@migrations()
def m_metric_hour_rollups(db: Database) -> None:
    """Hour buckets next to the day buckets, for the days those cannot answer (a period's edges, the day of
    as_of - W). The day rollups are marked as built for no zone, so the next refresh rebuilds both."""
    for statement in (
        "CREATE TABLE metric_rollup_hour (dim TEXT NOT NULL, day INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (dim, day)) WITHOUT ROWID",
        "DELETE FROM metric_rollup_state WHERE name = 'zone'",
    ):
        db.execute(statement)


@migrations()
def m_metric_contacts(db: Database) -> None:
    """The candidates move to their own narrow table, with the derived next repeat: a write then changes a
    narrow row, not a wide contacts row. Contacts keep no next repeat.

    Why a table: a write changes the next repeat of each touched customer's previous contact, and in the wide
    contacts row that cost one random table page per record (measured: 60% of the pages a webhook commit
    wrote, and an UPDATE of every row of an import). Here it changes one narrow row, in the same pages a
    covering index would have had to change anyway. Clustered by start, so a count over a time range reads
    only consecutive pages. An update or delete of a contact moves or removes its candidate row (triggers);
    the writer then works out the next repeats of the customers it touched.
    """
    for statement in (
        """CREATE TABLE metric_contacts (
        started_us INTEGER NOT NULL,
        pk INTEGER NOT NULL,  -- contacts.pk
        end_us INTEGER NOT NULL,
        next_repeat_us INTEGER,  -- derived: the start of the customer's first repeatable contact after this one
        tier INTEGER NOT NULL,
        escalated INTEGER NOT NULL,
        resolved INTEGER,
        agent TEXT NOT NULL,
        team TEXT,
        queue TEXT,
        channel TEXT NOT NULL,
        PRIMARY KEY (started_us, pk)
    ) WITHOUT ROWID""",
        """INSERT INTO metric_contacts (started_us, pk, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel)
        SELECT started_us, pk, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel FROM contacts WHERE direction = 'inbound' AND agent IS NOT NULL ORDER BY started_us, pk""",
        "CREATE INDEX metric_contacts_agent ON metric_contacts (agent, started_us)",
        "DROP INDEX contacts_candidates_time",
        "DROP INDEX contacts_candidates_agent",
        "ALTER TABLE contacts DROP COLUMN next_repeat_us",
        """CREATE TRIGGER contacts_metric_update
        AFTER UPDATE OF customer_id, agent, team, queue, channel, direction, tier, escalated, resolved,
            parent_id, started_us, ended_us ON contacts
        BEGIN
            DELETE FROM metric_contacts WHERE started_us = old.started_us AND pk = old.pk;
            INSERT INTO metric_contacts (started_us, pk, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel)
            SELECT new.started_us, new.pk, new.end_us, NULL, new.tier, new.escalated, new.resolved, new.agent,
                new.team, new.queue, new.channel
            WHERE new.direction = 'inbound' AND new.agent IS NOT NULL;
        END""",
        """CREATE TRIGGER contacts_metric_delete AFTER DELETE ON contacts
        BEGIN
            DELETE FROM metric_contacts WHERE started_us = old.started_us AND pk = old.pk;
        END""",
    ):
        db.execute(statement)


@migrations()
def m_subscription_cadence(db: Database) -> None:
    """Weekly and monthly digests: subscriptions get a cadence (and its day); one digest of each cadence per
    channel and scope. A table rebuild (SQLite cannot change a UNIQUE constraint); existing subscriptions stay daily."""
    for statement in (
        """CREATE TABLE subscriptions_cadence (
        id INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        scope TEXT NOT NULL,
        local_time TEXT NOT NULL,
        zone TEXT,
        weekdays_only INTEGER NOT NULL,
        created_by TEXT,
        created_us INTEGER NOT NULL,
        cadence TEXT NOT NULL DEFAULT 'daily' CHECK (cadence IN ('daily', 'weekly', 'monthly')),
        cadence_day INTEGER,
        UNIQUE (channel, scope, cadence)
    )""",
        """INSERT INTO subscriptions_cadence (id, channel, scope, local_time, zone, weekdays_only, created_by, created_us)
        SELECT id, channel, scope, local_time, zone, weekdays_only, created_by, created_us FROM subscriptions""",
        "DROP TABLE subscriptions",
        "ALTER TABLE subscriptions_cadence RENAME TO subscriptions",
    ):
        db.execute(statement)


@migrations()
def m_outbox_claims(db: Database) -> None:
    """Which process claimed an outbox row: a claim whose process has ended is recovered at once, by any other
    process, without waiting for a restart (see ``bot.scheduler.delivery.Poster.recover_in_doubt``)."""
    db.execute("ALTER TABLE outbox ADD COLUMN claimed_by TEXT")


@migrations()
def m_metric_contacts_reason(db: Database) -> None:
    """The contact reason as a dimension like the others: a column of the candidates (filters, breakdowns,
    ``why``), kept by the update trigger (which now also fires on a changed reason), and rollup buckets of its
    own: the zone is forgotten, so the next refresh rebuilds every day with them."""
    fields = (
        "customer_id, agent, team, queue, reason, channel, direction, tier, escalated, resolved, parent_id, "
        "started_us, ended_us"
    )
    for statement in (
        "ALTER TABLE metric_contacts ADD COLUMN reason TEXT",
        "UPDATE metric_contacts SET reason = (SELECT c.reason FROM contacts AS c WHERE c.pk = metric_contacts.pk)",
        "DROP TRIGGER contacts_metric_update",
        f"""CREATE TRIGGER contacts_metric_update AFTER UPDATE OF {fields} ON contacts
        BEGIN
            DELETE FROM metric_contacts WHERE started_us = old.started_us AND pk = old.pk;
            INSERT INTO metric_contacts (started_us, pk, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel, reason)
            SELECT new.started_us, new.pk, new.end_us, NULL, new.tier, new.escalated, new.resolved, new.agent,
                new.team, new.queue, new.channel, new.reason
            WHERE new.direction = 'inbound' AND new.agent IS NOT NULL;
        END""",
        "DROP TRIGGER contacts_rollup_dirty_update",
        f"""CREATE TRIGGER contacts_rollup_dirty_update AFTER UPDATE OF {fields} ON contacts
        BEGIN
            INSERT INTO metric_rollup_dirty (utc_day) SELECT old.started_us / 86400000000
            WHERE NOT EXISTS (SELECT 1 FROM metric_rollup_dirty WHERE utc_day = old.started_us / 86400000000);
        END""",
        "DELETE FROM metric_rollup_state WHERE name = 'zone'",
    ):
        db.execute(statement)


@migrations()
def m_contact_versions(db: Database) -> None:
    """The sender's version of each record (``updated_at``): a re-sent older version never replaces a newer one."""
    db.execute("ALTER TABLE contacts ADD COLUMN updated_us INTEGER")


@migrations()
def m_agent_roster(db: Database) -> None:
    """The agent roster: agents with team, tier and Slack user, and the platform ids that mean each of them.
    See ``bot/storage/sqlite_roster.py``."""
    db.execute(
        """CREATE TABLE agent_roster (
        agent TEXT PRIMARY KEY,
        team TEXT,
        tier INTEGER CHECK (tier >= 1),
        slack_user TEXT
    )"""
    )
    db.execute(
        """CREATE TABLE agent_platform_ids (
        platform TEXT NOT NULL,
        platform_id TEXT NOT NULL,
        agent TEXT NOT NULL REFERENCES agent_roster (agent),
        PRIMARY KEY (platform, platform_id)
    ) WITHOUT ROWID"""
    )


@migrations()
def m_metric_contacts_quick_returns(db: Database) -> None:
    """Window sensitivity under a day (``metrics.windows``): the candidates whose first repeat came within a day
    of their end (about one in ten), with every column a question filters on, so the quick returns of a period
    are read from them alone. The predicate is restated word for word by the query (SQLite matches it as text)."""
    db.execute(
        "CREATE INDEX metric_contacts_quick_return ON metric_contacts "
        "(started_us, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel, reason) "
        "WHERE next_repeat_us <= end_us + 86400000000"
    )


@migrations()
def m_metric_rollup_dirty_versions(db: Database) -> None:
    """A version on each mark of a day to roll up again, raised by every write that marks the day (the triggers
    here, the writer's end-of-write statement in ``sqlite_rollups``): a refresh rolls days up from a read snapshot,
    outside the write lock, and clears a mark only if its version is still the one it read (the day was not
    written meanwhile)."""
    fields = (
        "customer_id, agent, team, queue, reason, channel, direction, tier, escalated, resolved, parent_id, "
        "started_us, ended_us"
    )
    mark = """INSERT INTO metric_rollup_dirty (utc_day) VALUES (old.started_us / 86400000000)
            ON CONFLICT (utc_day) DO UPDATE SET version = version + 1;"""
    for statement in (
        "ALTER TABLE metric_rollup_dirty ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
        "DROP TRIGGER contacts_rollup_dirty_update",
        f"""CREATE TRIGGER contacts_rollup_dirty_update AFTER UPDATE OF {fields} ON contacts
        BEGIN
            {mark}
        END""",
        "DROP TRIGGER contacts_rollup_dirty_delete",
        f"""CREATE TRIGGER contacts_rollup_dirty_delete AFTER DELETE ON contacts
        BEGIN
            {mark}
        END""",
    ):
        db.execute(statement)


@migrations()
def m_raw_dictionaries(db: Database) -> None:
    """The zstd dictionaries long raw records are compressed with (``bot/storage/sqlite_raw.py``): every one
    ever used is kept, as stored raws name theirs."""
    db.execute(
        "CREATE TABLE raw_dictionaries (id INTEGER PRIMARY KEY, dictionary BLOB NOT NULL, trained_us INTEGER NOT NULL)"
    )


@migrations()
def m_contacts_key_index(db: Database) -> None:
    """The (source, id) key as a named unique index, ``contacts_key``, instead of the table's UNIQUE constraint (whose
    index SQLite never lets go): an initial bulk load drops it and builds it once at the end, a sort, instead of
    inserting each row's random key into it (``SQLiteBulkWriter``). Same rows, same checks: ``ON CONFLICT (source,
    id)`` takes either. A constraint cannot be turned into an index without copying the table, so only an empty
    store is changed (a new one, or one that never got a contact); a store with contacts keeps its constraint, and
    its imports their per-row key checks."""
    if db.execute("SELECT EXISTS (SELECT 1 FROM contacts)").fetchone()[0]:
        return
    attached = [  # the customer index and the triggers, as the migrations before this one made them
        sql
        for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'contacts' AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name"
        )
    ]
    for statement in (
        "DROP TABLE contacts",
        """CREATE TABLE contacts (
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
            updated_us INTEGER
        )""",
        "CREATE UNIQUE INDEX contacts_key ON contacts (source, id)",
        *attached,
    ):
        db.execute(statement)

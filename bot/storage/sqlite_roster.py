"""SQL for the agent roster (``bot.roster``): agents with team, tier and Slack user, and the platform ids that
mean each of them; and the re-mapping of stored contacts that still carry one of those ids."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from bot.roster import RosterEntry
from bot.storage import sqlite_links

# (the tables: migration m_agent_roster in sqlite_migrations.py)

# The next repeat of a re-mapped candidate: changing its agent moved its metric_contacts row (the update trigger
# sets next_repeat_us to NULL); nothing about repeats changed, so it is worked out again as the writer would.
_RESTORE_NEXT_REPEAT = """
UPDATE metric_contacts SET next_repeat_us = (
    SELECT min(r.started_us) FROM contacts AS c JOIN contacts AS r
        ON r.customer_id = c.customer_id AND r.repeatable = 1 AND r.started_us > c.started_us
    WHERE c.pk = metric_contacts.pk
)
WHERE pk IN (SELECT pk FROM temp.remapped)
"""


# The roster's version: a store_stats row (none before the first roster: version 0) that every change of the roster
# tables adds one to, in its transaction, so that a server reads the roster again only when it changed
# (``SQLiteContactStore.roster``): 5,000 agents took ~50 ms to read, for every webhook request.
_VERSION = "SELECT value FROM store_stats WHERE name = 'roster'"
_NEW_VERSION = (
    "INSERT INTO store_stats (name, value) VALUES ('roster', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1"
)


def version(conn: sqlite3.Connection) -> int:
    """The roster's version (see ``_VERSION``)."""
    row = conn.execute(_VERSION).fetchone()
    return 0 if row is None else int(row[0])


def changed(conn: sqlite3.Connection) -> None:
    """The roster tables changed in the caller's transaction: a new version."""
    conn.execute(_NEW_VERSION)


def replace(conn: sqlite3.Connection, entries: Sequence[RosterEntry]) -> int:
    """Make ``entries`` the roster (inside the caller's transaction); link their Slack users; re-map the stored
    contacts whose agent is still one of the roster's platform ids. Returns how many contacts were re-mapped."""
    changed(conn)
    conn.execute("DELETE FROM agent_platform_ids")
    conn.execute("DELETE FROM agent_roster")
    conn.executemany(
        "INSERT INTO agent_roster (agent, team, tier, slack_user) VALUES (?, ?, ?, ?)",
        [(e.agent, e.team, e.tier, e.slack_user) for e in entries],
    )
    conn.executemany(
        "INSERT INTO agent_platform_ids (platform, platform_id, agent) VALUES (?, ?, ?)",
        [(platform, platform_id, e.agent) for e in entries for platform, platform_id in e.ids],
    )
    for entry in entries:
        if entry.slack_user is not None:
            sqlite_links.link(conn, entry.slack_user, entry.agent, "roster")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS remapped (pk INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM temp.remapped")
    conn.execute(
        "INSERT INTO temp.remapped (pk) SELECT c.pk FROM contacts AS c JOIN agent_platform_ids AS i "
        "ON i.platform = c.source AND i.platform_id = c.agent"
    )
    conn.execute(
        """
        UPDATE contacts SET
            agent = (SELECT i.agent FROM agent_platform_ids AS i WHERE i.platform = contacts.source
                     AND i.platform_id = contacts.agent),
            team = coalesce(team, (SELECT r.team FROM agent_platform_ids AS i JOIN agent_roster AS r USING (agent)
                     WHERE i.platform = contacts.source AND i.platform_id = contacts.agent)),
            tier = coalesce((SELECT r.tier FROM agent_platform_ids AS i JOIN agent_roster AS r USING (agent)
                     WHERE i.platform = contacts.source AND i.platform_id = contacts.agent), tier)
        WHERE pk IN (SELECT pk FROM temp.remapped)
        """
    )
    conn.execute(_RESTORE_NEXT_REPEAT)
    remapped: int = conn.execute("SELECT count(*) FROM temp.remapped").fetchone()[0]
    conn.execute("DELETE FROM temp.remapped")
    return remapped


def entries(conn: sqlite3.Connection) -> list[RosterEntry]:
    ids: dict[str, list[tuple[str, str]]] = {}
    for platform, platform_id, agent in conn.execute(
        "SELECT platform, platform_id, agent FROM agent_platform_ids ORDER BY agent, platform, platform_id"
    ):
        ids.setdefault(agent, []).append((platform, platform_id))
    rows = conn.execute("SELECT agent, team, tier, slack_user FROM agent_roster ORDER BY agent")
    return [RosterEntry(agent, team, tier, slack, tuple(ids.get(agent, ()))) for agent, team, tier, slack in rows]


def unknown_agents(conn: sqlite3.Connection, sources: Sequence[str]) -> list[tuple[str, str, int]]:
    """(source, agent, contacts) of the platforms' contacts whose agent is no roster agent, by source and agent."""
    marks = ",".join("?" * len(sources))
    rows = conn.execute(
        f"SELECT source, agent, count(*) FROM contacts WHERE source IN ({marks}) AND agent IS NOT NULL "
        "AND agent NOT IN (SELECT agent FROM agent_roster) GROUP BY source, agent ORDER BY source, agent",
        tuple(sources),
    )
    return [(str(source), str(agent), int(count)) for source, agent, count in rows]

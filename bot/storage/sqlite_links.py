"""SQL for the links between Slack users and agent names, and for the distinct values of a dimension."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.storage import AgentLink

# The columns a dimension may name; anything else is refused before it reaches SQL.
DIMENSION_COLUMNS = frozenset({"agent", "team", "queue", "channel", "reason"})


def link(conn: sqlite3.Connection, slack_user_id: str, agent: str, linked_by: str | None) -> None:
    """Link (or re-link) a Slack user to an agent name; one agent per Slack user."""
    conn.execute(
        """
        INSERT INTO slack_links (slack_user_id, agent, linked_by) VALUES (?, ?, ?)
        ON CONFLICT (slack_user_id) DO UPDATE SET
            agent = excluded.agent,
            linked_by = excluded.linked_by,
            linked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
        """,
        (slack_user_id, agent, linked_by),
    )


def unlink(conn: sqlite3.Connection, slack_user_id: str) -> bool:
    cursor = conn.execute("DELETE FROM slack_links WHERE slack_user_id = ?", (slack_user_id,))
    return cursor.rowcount > 0


def agent_for_user(conn: sqlite3.Connection, slack_user_id: str) -> str | None:
    row = conn.execute("SELECT agent FROM slack_links WHERE slack_user_id = ?", (slack_user_id,)).fetchone()
    return None if row is None else str(row[0])


def list_links(conn: sqlite3.Connection) -> list[AgentLink]:
    from bot.storage import AgentLink

    rows = conn.execute(
        "SELECT slack_user_id, agent, linked_by, linked_at FROM slack_links ORDER BY agent, slack_user_id"
    )
    return [AgentLink(*row) for row in rows]


def dimension_values(conn: sqlite3.Connection, dimension: str) -> list[str]:
    """Every distinct non-empty value of ``dimension`` among stored contacts, sorted."""
    if dimension not in DIMENSION_COLUMNS:
        raise ValueError(f"unknown dimension {dimension!r}")
    rows = conn.execute(f"SELECT DISTINCT {dimension} FROM contacts WHERE {dimension} IS NOT NULL ORDER BY {dimension}")
    return [str(row[0]) for row in rows]

"""SQL for ``why``: the matured candidates that are not resolved, with their first repeat (``metrics.why``); and
the escalation counts of the agent scorecard.

One statement, streamed: the candidates by the time index (or the agent index for one agent), only the failing
ones joined to their contact row, and the first repeat looked up by the customer index at exactly the stored next
repeat's start (``next_repeat_us`` is the earliest repeatable start after the contact's; ties by ``(source, id)``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from bot.storage.sqlite_metrics import NO_REPEAT, TIER1_SUCCESS, filter_conditions
from metrics.why import Repeat, WhyQuery, WhyRow, causes_of

_WHY_SQL = """
SELECT c.source, c.id, c.customer_id, m.agent, m.team, m.queue, m.channel, m.reason, m.started_us, c.ended_us,
    m.end_us, m.escalated, m.resolved, m.repeated,
    r.source, r.id, r.agent, r.channel, r.reason, r.started_us
FROM (
    SELECT started_us, pk, end_us, next_repeat_us, escalated, resolved, agent, team, queue, channel, reason,
        coalesce(next_repeat_us <= end_us + :w, 0) AS repeated
    FROM metric_contacts
    WHERE started_us >= :lo AND started_us < :hi AND end_us <= :matured_by AND {where} AND NOT ({success})
) AS m
CROSS JOIN contacts AS c ON c.pk = m.pk
LEFT JOIN contacts AS r ON m.repeated AND r.pk = (
    SELECT f.pk FROM contacts AS f
    WHERE f.customer_id = c.customer_id AND f.repeatable = 1 AND f.started_us = m.next_repeat_us
    ORDER BY f.source, f.id LIMIT 1
)
ORDER BY m.started_us, c.source, c.id
"""


def why_rows(conn: sqlite3.Connection, query: WhyQuery) -> Iterator[WhyRow]:
    """The rows of ``query`` in the contract's order, streamed from one read transaction of ``conn``."""
    no_repeat = NO_REPEAT.format(w=":w")
    success = no_repeat if query.metric == "acr" else f"{TIER1_SUCCESS} AND {no_repeat}"
    params: dict[str, object] = {
        "w": query.window_us,
        "lo": query.since_us,
        "hi": min(query.until_us, query.as_of_us),
        "matured_by": query.as_of_us - query.window_us,
    }
    conditions = ["tier = 1"] if query.metric == "tier1" else []
    conditions += filter_conditions(query.filters, params)
    sql = _WHY_SQL.format(where=" AND ".join(conditions) or "1", success=success)
    for (
        source, contact_id, customer_id, agent, team, queue, channel, reason, started_us, ended_us, end_us,
        escalated, resolved, repeated, r_source, r_id, r_agent, r_channel, r_reason, r_started_us,
    ) in conn.execute(sql, params):  # fmt: skip
        repeat = None
        if r_id is not None:
            repeat = Repeat(r_source, r_id, r_agent, r_channel, r_reason, r_started_us, r_started_us - end_us)
        causes = causes_of(
            query.metric,
            escalated=bool(escalated),
            resolved=None if resolved is None else bool(resolved),
            repeated=bool(repeated),
        )
        yield WhyRow(
            source, contact_id, customer_id, agent, team, queue, channel, reason, started_us, ended_us, causes, repeat
        )


def escalation_counts(conn: sqlite3.Connection, query: WhyQuery) -> tuple[int, int]:
    """``(candidates, escalated)`` among the candidates of ``query``'s scope and period, every tier, matured or
    not (an escalation is known when the contact ends): the scorecard's escalation share and volume."""
    params: dict[str, object] = {"lo": query.since_us, "hi": min(query.until_us, query.as_of_us)}
    where = " AND ".join(["started_us >= :lo AND started_us < :hi", *filter_conditions(query.filters, params)])
    row = conn.execute(f"SELECT count(*), coalesce(sum(escalated), 0) FROM metric_contacts WHERE {where}", params)
    contacts, escalated = row.fetchone()
    return int(contacts), int(escalated)

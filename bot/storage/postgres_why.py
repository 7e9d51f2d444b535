"""SQL for ``why`` on PostgreSQL: the matured candidates that are not resolved, with their first repeat; and the
escalation counts of the agent scorecard.

The same statement as ``sqlite_why`` in PostgreSQL's boolean SQL (the rules: ``postgres_metrics``): the failing
candidates by the time index (or the agent index for one agent), joined to their contact row, and the first repeat
looked up by the customer index at exactly the stored next repeat's start (``next_repeat_us`` is the earliest
repeatable start after the contact's; ties by ``(source, id)``). Streamed through a server-side cursor.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from bot.storage.postgres_metrics import MATURED, NO_REPEAT, TIER1_SUCCESS, filter_conditions
from metrics.why import Repeat, WhyQuery, WhyRow, causes_of

ROWS_PER_FETCH = 2000  # rows a server-side cursor sends at a time: a team's month never sits in memory whole

_WHY_SQL = """
SELECT c.source, c.id, c.customer_id, m.agent, m.team, m.queue, m.channel, m.reason, m.started_us, c.ended_us,
    m.end_us, m.escalated, m.resolved, m.repeated,
    r.source, r.id, r.agent, r.channel, r.reason, r.started_us
FROM (
    SELECT pk, started_us, end_us, next_repeat_us, escalated, resolved, agent, team, queue, channel, reason,
        NOT {no_repeat} AS repeated
    FROM metric_contacts
    WHERE started_us >= %(lo)s AND started_us < %(hi)s AND {matured} AND {where} AND NOT ({success})
) AS m
JOIN contacts AS c ON c.pk = m.pk
LEFT JOIN LATERAL (
    SELECT f.source, f.id, f.agent, f.channel, f.reason, f.started_us FROM contacts AS f
    WHERE m.repeated AND f.customer_id = c.customer_id AND f.repeatable AND f.started_us = m.next_repeat_us
    ORDER BY f.source, f.id LIMIT 1
) AS r ON true
ORDER BY m.started_us, c.source, c.id
"""


def why_rows(conn: psycopg.Connection[tuple[Any, ...]], query: WhyQuery) -> Iterator[WhyRow]:
    """The rows of ``query`` in the contract's order, streamed from the transaction ``conn`` is in."""
    success = NO_REPEAT if query.metric == "acr" else f"{TIER1_SUCCESS} AND {NO_REPEAT}"
    params: dict[str, object] = {
        "w": query.window_us,
        "lo": query.since_us,
        "hi": min(query.until_us, query.as_of_us),
        "matured_by": query.as_of_us - query.window_us,
    }
    conditions = ["tier = 1"] if query.metric == "tier1" else []
    conditions += filter_conditions(query.filters, params)
    sql = _WHY_SQL.format(
        no_repeat=NO_REPEAT, matured=MATURED, where=" AND ".join(conditions) or "true", success=success
    )
    with conn.cursor(name="why_rows") as cursor:
        cursor.itersize = ROWS_PER_FETCH
        cursor.execute(sql, params)
        for (
            source, contact_id, customer_id, agent, team, queue, channel, reason, started_us, ended_us, end_us,
            escalated, resolved, repeated, r_source, r_id, r_agent, r_channel, r_reason, r_started_us,
        ) in cursor:  # fmt: skip
            repeat = None
            if r_id is not None:
                repeat = Repeat(r_source, r_id, r_agent, r_channel, r_reason, r_started_us, r_started_us - end_us)
            causes = causes_of(query.metric, escalated=escalated, resolved=resolved, repeated=repeated)
            yield WhyRow(
                source, contact_id, customer_id, agent, team, queue, channel, reason, started_us, ended_us, causes,
                repeat,
            )  # fmt: skip


def escalation_counts(conn: psycopg.Connection[tuple[Any, ...]], query: WhyQuery) -> tuple[int, int]:
    """``(candidates, escalated)`` among the candidates of ``query``'s scope and period, every tier, matured or
    not (``sqlite_why.escalation_counts``)."""
    params: dict[str, object] = {"lo": query.since_us, "hi": min(query.until_us, query.as_of_us)}
    where = " AND ".join(["started_us >= %(lo)s AND started_us < %(hi)s", *filter_conditions(query.filters, params)])
    row = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE escalated) FROM metric_contacts WHERE {where}", params
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])

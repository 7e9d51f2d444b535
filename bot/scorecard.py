"""The agent scorecard's numbers (``/acr agent:maria card``): ACR at 1 and 7 days, tier-1, the escalation share
and the volume, each beside the agent's team and the whole center, the last 8 weeks and the top repeat reasons.

Every number is an ordinary question to the engine or the store (so it is exactly what ``/acr`` would answer);
``metrics.scorecard`` says how they are compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import tzinfo
from typing import Any

from bot.storage import ContactStore
from metrics.definitions import clip_until
from metrics.query import Counts, Filter, Metric, MetricQuery, MetricResult
from metrics.scorecard import (
    TOP_REPEAT_REASONS,
    Scorecard,
    ScoreLine,
    TrendWeek,
    Volume,
    escalation_share,
    main_team,
    trend_weeks,
    versus,
)
from metrics.timeutil import US_PER_DAY
from metrics.why import WhyQuery, WhySummary

Compute = Callable[[ContactStore, MetricQuery, Any], MetricResult]
# (label, metric, window): the rates on the card, in this order.
RATES: tuple[tuple[str, Metric, int], ...] = (
    ("ACR 1 day", "acr", US_PER_DAY),
    ("ACR 7 days", "acr", 7 * US_PER_DAY),
    ("Tier-1 resolution", "tier1", 7 * US_PER_DAY),
)


def build_scorecard(store: ContactStore, compute: Compute, query: MetricQuery, zone: tzinfo) -> Scorecard:
    """The card of the agent named in ``query``'s filters, over ``query``'s period (its window and other filters
    are not used: the card has its own)."""
    agent = dict(query.filters)["agent"]
    base = replace(query, filters=(), by=None)
    by_agent: tuple[tuple[Filter, str], ...] = (("agent", agent),)
    team = main_team({row.key: row.counts for row in _result(store, compute, base, zone, by_agent, "team").rows})
    by_team: tuple[tuple[Filter, str], ...] = (("team", team),) if team is not None else ()

    def total(metric: Metric, window_us: int, filters: tuple[tuple[Filter, str], ...]) -> Counts:
        asked = replace(base, metric=metric, window_us=window_us)
        return _result(store, compute, asked, zone, filters).total

    lines: list[ScoreLine] = []
    for label, metric, window_us in RATES:
        mine = total(metric, window_us, by_agent)
        center = total(metric, window_us, ())
        team_counts = versus(mine, total(metric, window_us, by_team)) if team is not None else None
        lines.append(ScoreLine(label, mine, team_counts, versus(mine, center)))
    escalations = {
        name: escalation_share(*store.escalation_counts(WhyQuery.of(replace(base, filters=filters))))
        for name, filters in (("agent", by_agent), ("team", by_team), ("center", ()))
    }
    lines.append(
        ScoreLine(
            "Escalated",
            escalations["agent"],
            versus(escalations["agent"], escalations["team"]) if team is not None else None,
            versus(escalations["agent"], escalations["center"]),
            lower_is_better=True,
        )
    )
    volume = Volume(
        escalations["agent"].matured,
        escalations["team"].matured if team is not None else 0,
        _agents(store, compute, base, zone, by_team) if team is not None else 0,
        escalations["center"].matured,
        _agents(store, compute, base, zone, ()),
    )
    summary = WhySummary("acr")
    for _ in summary.extend(store.why_rows(WhyQuery.of(replace(base, filters=by_agent)))):
        pass
    reasons = sorted(summary.came_back_with.items(), key=lambda item: (-item[1], item[0]))[:TOP_REPEAT_REASONS]
    return Scorecard(
        agent=agent,
        team=team,
        since_us=base.since_us,
        until_us=clip_until(base.until_us, base.as_of_us),
        as_of_us=base.as_of_us,
        lines=tuple(lines),
        volume=volume,
        trend=_trend(store, compute, base, zone, by_agent, by_team if team is not None else None),
        repeat_reasons=tuple(reasons),
        repeats=summary.repeats,
    )


def _result(
    store: ContactStore,
    compute: Compute,
    query: MetricQuery,
    zone: tzinfo,
    filters: tuple[tuple[Filter, str], ...],
    by: Any = None,
) -> MetricResult:
    return compute(store, replace(query, filters=filters, by=by), zone)


def _agents(
    store: ContactStore, compute: Compute, base: MetricQuery, zone: tzinfo, filters: tuple[tuple[Filter, str], ...]
) -> int:
    """How many agents handled a contact of the scope in the period (for the volume per agent)."""
    rows = _result(store, compute, base, zone, filters, "agent").rows
    return sum(1 for row in rows if row.counts.matured + row.counts.pending > 0)


def _trend(
    store: ContactStore,
    compute: Compute,
    base: MetricQuery,
    zone: tzinfo,
    by_agent: tuple[tuple[Filter, str], ...],
    by_team: tuple[tuple[Filter, str], ...] | None,
) -> tuple[TrendWeek, ...]:
    """ACR (7 days) by calendar week over the last 8 weeks up to as_of, the agent's beside the team's."""
    since_us, keys = trend_weeks(base.as_of_us, zone)
    weeks = replace(base, metric="acr", window_us=7 * US_PER_DAY, since_us=since_us, until_us=base.as_of_us)
    mine = {row.key: row.counts for row in _result(store, compute, weeks, zone, by_agent, "week").rows}
    if by_team is None:
        return tuple(TrendWeek(key, mine.get(key, Counts()), None) for key in keys)
    team = {row.key: row.counts for row in _result(store, compute, weeks, zone, by_team, "week").rows}
    return tuple(TrendWeek(key, mine.get(key, Counts()), team.get(key, Counts())) for key in keys)

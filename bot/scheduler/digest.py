"""The daily digest: what a supervisor reads with the morning coffee. ``gather`` asks the engine; the rest is pure.

Numbers are as of the digest's scheduled instant (not when it was actually sent), so a digest sent late after a
restart says exactly what it would have said on time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo
from typing import Any

from bot.presentation import (
    Block,
    Message,
    cell,
    change_words,
    context,
    escape,
    instant_words,
    interval_span,
    percent,
    plain,
    section,
    target_words,
)
from bot.storage.schedules import AlertRule, scope_filters, scope_label
from metrics.engine import MetricSource, compute
from metrics.periods import format_window, last_period, local_date, local_midnight_us
from metrics.query import Breakdown, Counts, Dimension, Metric, MetricQuery, MetricResult
from metrics.significance import best_first_key, far_less_data, worst_first_key
from metrics.timeutil import US_PER_DAY, from_us

Compute = Callable[[MetricSource, MetricQuery, tzinfo], MetricResult]
PERIOD_DAYS = 30
EXTREMES = 3  # lowest and highest agents shown
MAX_GROUP_LINES = 15


@dataclass(frozen=True, slots=True)
class DigestInputs:
    """Every engine answer a digest is made of (all as of the same instant, last 30 days unless named)."""

    scope: str
    as_of_us: int
    acr_7d: MetricResult
    acr_7d_before: MetricResult  # the 30 days before
    acr_1d: MetricResult
    acr_1d_before: MetricResult
    tier1: MetricResult
    tier1_before: MetricResult
    yesterday: MetricResult  # ACR 7d over yesterday's local calendar day: its candidates are the volume
    groups_acr: MetricResult  # by team (by agent for a scoped digest)
    groups_tier1: MetricResult
    agents_acr: MetricResult  # by agent: the lowest and highest
    days_acr: MetricResult  # by day
    days_tier1: MetricResult


def gather(
    source: MetricSource, scope: str, as_of_us: int, zone: tzinfo, compute_fn: Compute = compute
) -> DigestInputs:
    """Ask the engine every question of the digest for ``scope`` as of ``as_of_us``."""
    filters = scope_filters(scope)
    since_us, until_us = last_period(PERIOD_DAYS, as_of_us)
    before = (since_us - PERIOD_DAYS * US_PER_DAY, since_us)
    group: Breakdown = "agent" if filters else "team"

    def ask(metric: Metric, window_days: int, period: tuple[int, int], by: Breakdown | None = None) -> MetricResult:
        query = MetricQuery(metric, window_days * US_PER_DAY, period[0], period[1], as_of_us, filters, by)
        return compute_fn(source, query, zone)

    this = (since_us, until_us)
    today = local_date(as_of_us, zone)
    yesterday = (local_midnight_us(today - timedelta(days=1), zone), local_midnight_us(today, zone))
    return DigestInputs(
        scope=scope,
        as_of_us=as_of_us,
        acr_7d=ask("acr", 7, this),
        acr_7d_before=ask("acr", 7, before),
        acr_1d=ask("acr", 1, this),
        acr_1d_before=ask("acr", 1, before),
        tier1=ask("tier1", 7, this),
        tier1_before=ask("tier1", 7, before),
        yesterday=ask("acr", 7, yesterday),
        groups_acr=ask("acr", 7, this, group),
        groups_tier1=ask("tier1", 7, this, group),
        agents_acr=ask("acr", 7, this, "agent"),
        days_acr=ask("acr", 7, this, "day"),
        days_tier1=ask("tier1", 7, this, "day"),
    )


# --- composition (pure) --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Headline:
    label: str
    now: Counts
    before: Counts
    target: float | None = None  # a fraction
    before_lacks_data: bool = False  # the data starts inside the 30 days before, which hold far less of it

    @property
    def change(self) -> str | None:
        return None if self.before_lacks_data else change_words(self.now, self.before)


@dataclass(frozen=True, slots=True)
class GroupLine:
    key: str
    acr: Counts
    tier1: Counts


@dataclass(frozen=True, slots=True)
class DayPoint:
    day: date
    acr: Counts
    tier1: Counts


@dataclass(frozen=True, slots=True)
class Digest:
    scope: str
    as_of_us: int
    day: date  # the local day the digest is for
    headlines: list[Headline]
    yesterday: date
    yesterday_volume: int
    group_dimension: Dimension
    groups: list[GroupLine]
    min_sample: int
    lowest: list[GroupLine]
    highest: list[GroupLine]
    pending_7d: int
    pending_1d: int
    firing: list[AlertRule]
    days: list[DayPoint] = field(default_factory=list)


def compose(
    inputs: DigestInputs,
    firing: list[AlertRule],
    min_sample: int,
    zone: tzinfo,
    targets: Mapping[Metric, float | None] | None = None,
    data_since_us: int | None = None,
) -> Digest:
    """The digest's content from the engine's answers and the alerts now firing; ``targets`` are fractions,
    ``data_since_us`` the start of the stored data (a previous period mostly before it is not compared)."""
    today = local_date(inputs.as_of_us, zone)
    goals = targets or {}
    before_since_us = inputs.acr_7d_before.since_us

    def headline(label: str, metric: Metric, now: MetricResult, before: MetricResult) -> Headline:
        lacks = far_less_data(now.total, before.total, data_since_us, before_since_us)
        return Headline(label, now.total, before.total, goals.get(metric), lacks)

    tier1_by_key = {row.key: row.counts for row in inputs.groups_tier1.rows}
    groups = [GroupLine(row.key, row.counts, tier1_by_key.get(row.key, Counts())) for row in inputs.groups_acr.rows]
    groups.sort(key=lambda g: (*worst_first_key(g.acr), g.key))  # the breakdowns' rule: see metrics.significance
    eligible = [
        GroupLine(row.key, row.counts, Counts()) for row in inputs.agents_acr.rows if row.counts.matured >= min_sample
    ]
    shown = min(EXTREMES, len(eligible) // 2)
    # The same rule as every breakdown: lowest by the upper end of the 95% interval, highest by its lower end.
    lowest = sorted(eligible, key=lambda g: (*worst_first_key(g.acr), g.key))[:shown]
    highest = sorted((g for g in eligible if g not in lowest), key=lambda g: (*best_first_key(g.acr), g.key))[:shown]
    tier1_days = {row.key: row.counts for row in inputs.days_tier1.rows}
    days = [
        DayPoint(date.fromisoformat(row.key), row.counts, tier1_days.get(row.key, Counts()))
        for row in inputs.days_acr.rows
    ]
    relevant = [rule for rule in firing if rule.state.firing and (not inputs.scope or rule.scope == inputs.scope)]
    return Digest(
        scope=inputs.scope,
        as_of_us=inputs.as_of_us,
        day=today,
        headlines=[
            headline("ACR (7-day window)", "acr", inputs.acr_7d, inputs.acr_7d_before),
            headline("ACR (1-day window)", "acr", inputs.acr_1d, inputs.acr_1d_before),
            headline("Tier-1 resolution (7-day window)", "tier1", inputs.tier1, inputs.tier1_before),
        ],
        yesterday=today - timedelta(days=1),
        yesterday_volume=inputs.yesterday.total.matured + inputs.yesterday.total.pending,
        group_dimension="agent" if inputs.scope else "team",
        groups=groups,
        min_sample=min_sample,
        lowest=lowest,
        highest=highest,
        pending_7d=inputs.acr_7d.total.pending,
        pending_1d=inputs.acr_1d.total.pending,
        firing=relevant,
        days=days,
    )


# --- rendering (pure) ----------------------------------------------------------------------------------


def _interval(counts: Counts) -> str:
    return interval_span(counts, none="no interval")


def _n(counts: Counts) -> str:
    return f"n={counts.matured:,}"


def _headline_text(headline: Headline) -> str:
    now = headline.now
    change = headline.change
    if headline.before_lacks_data:
        versus = f"the 30 days before have far less data ({_n(headline.before)}: the data starts inside them)"
    elif change:
        versus = f"vs the 30 days before ({percent(headline.before.rate)}): {change}"
    else:
        versus = "no earlier data"
    target = target_words(now.rate, headline.target)
    goal = f"; {target}" if target else ""
    return (
        f"{headline.label}: {percent(now.rate)} (95% CI {_interval(now)}, {_n(now)}){goal}; {versus}; "
        f"{now.pending:,} pending"
    )


def rule_words(rule: AlertRule) -> str:
    """``tier-1 below 75% for team billing (7d window, latest 7 matured days, min 30)`` for lists and digests."""
    metric = "ACR" if rule.metric == "acr" else "tier-1"
    strict = ", strict" if rule.strict else ""
    return (
        f"{metric} below {rule.threshold * 100:g}% for {scope_label(rule.scope)} ({format_window(rule.window_us)} "
        f"window, latest {rule.last_days} matured days, min {rule.min_matured}{strict})"
    )


def _group_table(digest: Digest) -> list[str]:
    name = "Agent" if digest.group_dimension == "agent" else "Team"
    width = max([len(name), *(len(cell(g.key)) for g in digest.groups[:MAX_GROUP_LINES])])
    lines = [f"{name:<{width}}  {'ACR 7d':>7} {'n':>6}  {'Tier-1':>7} {'n':>6}"]
    for group in digest.groups[:MAX_GROUP_LINES]:
        mark = "*" if group.acr.matured < digest.min_sample else " "
        lines.append(
            f"{cell(group.key):<{width}}  {percent(group.acr.rate):>7} {group.acr.matured:>6,}  "
            f"{percent(group.tier1.rate):>7} {group.tier1.matured:>6,}{mark}".rstrip()
        )
    left_out = len(digest.groups) - MAX_GROUP_LINES
    if left_out > 0:
        lines.append(f"… {left_out} more not shown")
    return lines


def _extremes(lines: list[GroupLine], mark: Callable[[str], str]) -> str:
    return "; ".join(f"{mark(g.key)} {percent(g.acr.rate)} ({_interval(g.acr)}, {_n(g.acr)})" for g in lines)


def _sections(digest: Digest, zone: tzinfo, mark: Callable[[str], str]) -> dict[str, Any]:
    as_of = from_us(digest.as_of_us, zone)
    title = f"ACR daily digest — {mark(scope_label(digest.scope))} — {as_of:%a %Y-%m-%d}"
    sample = f"agents with at least {digest.min_sample} matured contacts"
    firing = [f"{mark(rule_words(rule))}: now {percent(rule.state.last_rate)} (#{rule.id})" for rule in digest.firing]
    return {
        "title": title,
        "headlines": [_headline_text(h) for h in digest.headlines],
        "volume": f"Yesterday ({digest.yesterday:%a %Y-%m-%d}): {digest.yesterday_volume:,} inbound contacts handled",
        "table_title": f"By {digest.group_dimension}, last 30 days (worst ACR first, by the top of its 95% interval; * fewer than "
        f"{digest.min_sample} matured):",
        "table": [mark(line) for line in _group_table(digest)],
        "lowest": f"Lowest ACR ({sample}): {_extremes(digest.lowest, mark)}" if digest.lowest else None,
        "highest": f"Highest ACR: {_extremes(digest.highest, mark)}" if digest.highest else None,
        "no_extremes": None if digest.lowest else f"No lowest/highest agents: fewer than two {sample}.",
        "pending": f"Pending (window not closed yet, not in the rates): {digest.pending_7d:,} for the 7-day window, "
        f"{digest.pending_1d:,} for the 1-day window.",
        "alerts": ("Alerts firing: " + "; ".join(firing)) if firing else "Alerts firing: none.",
        "footer": f"As of {instant_words(digest.as_of_us, zone)} · period: last 30 days · a contact counts once its repeat "
        "window has closed",
    }


def render(digest: Digest, zone: tzinfo) -> Message:
    """The digest as Block Kit (for Slack) and as plain text (for ``--dry-run`` and the README example)."""
    # Every text from data goes through ``mark``: ``escape`` for what Slack reads as mrkdwn (the notification text
    # and the sections, the table included), ``plain`` for the plain_text header and the terminal.
    mrk = _sections(digest, zone, escape)
    plain_parts = _sections(digest, zone, plain)
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": plain_parts["title"][:150], "emoji": False}},
        section("\n".join(f"• {h}" for h in mrk["headlines"])),
        section(mrk["volume"] + "\n" + mrk["pending"]),
    ]
    if digest.groups:
        table = "\n".join(mrk["table"])
        blocks.append(section(f"{mrk['table_title']}\n```{table}```"))
    extremes = [line for line in (mrk["lowest"], mrk["highest"], mrk["no_extremes"]) if line]
    blocks.append(section("\n".join(extremes)))
    blocks.append(section(mrk["alerts"]))
    blocks.append(context(mrk["footer"]))
    first = digest.headlines[0]
    notification = f"{mrk['title']}: {first.label} {percent(first.now.rate)}"
    lines = [plain_parts["title"], "", *plain_parts["headlines"], plain_parts["volume"], plain_parts["pending"], ""]
    if digest.groups:
        lines += [plain_parts["table_title"], *plain_parts["table"], ""]
    lines += [line for line in (plain_parts["lowest"], plain_parts["highest"], plain_parts["no_extremes"]) if line]
    lines += [plain_parts["alerts"], "", plain_parts["footer"]]
    return Message(blocks=blocks, text=notification, plain="\n".join(lines))

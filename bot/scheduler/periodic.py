"""The weekly and monthly digests: the last complete week (month) against the one before, with significance, the
teams (agents of a team digest) of that period, and the trend chart. ``gather`` asks the engine; the rest is pure.

Weeks run Monday to Sunday and months are calendar months, in the subscription's time zone. Numbers are as of the
digest's scheduled instant, like the daily digest, so a digest sent late after a restart says the same.

Which week: on a Monday, every contact of the week that just ended is still pending with the 7-day window (its
window closes during this week), so its rate would be "no data". The weekly digest therefore reports the latest
complete week whose window has closed (usually the week before last), and says how many contacts last week had;
a month is long enough that the month just ended is reported, with its pending contacts counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta, tzinfo

from bot.charts import Series, TrendChart, target_lines, trend_png
from bot.presentation import (
    Block,
    Message,
    cell,
    change_words,
    context,
    escape,
    interval_span,
    percent,
    period_words,
    section,
    target_words,
)
from bot.storage.schedules import Cadence, scope_filters, scope_label
from metrics.engine import MetricSource
from metrics.periods import local_date, local_midnight_us, next_month, previous_month
from metrics.query import METRICS, Breakdown, Counts, Metric, MetricQuery, MetricResult
from metrics.significance import change_between, far_less_data
from metrics.timeutil import US_PER_DAY, from_us

Compute = Callable[[MetricSource, MetricQuery, tzinfo], MetricResult]
WINDOW_US = 7 * US_PER_DAY
TREND_PERIODS = {"weekly": 8, "monthly": 12}
MAX_GROUP_LINES = 15
METRIC_NAMES = {"acr": "ACR (7-day window)", "tier1": "Tier-1 resolution"}


@dataclass(frozen=True, slots=True)
class PeriodDigest:
    """Every engine answer of a weekly or monthly digest, as of one instant."""

    cadence: Cadence
    scope: str
    as_of_us: int
    last: dict[Metric, MetricResult]  # the reported week (month): see reported_back
    before: dict[Metric, MetricResult]  # the one before it
    groups: MetricResult  # the reported period by team (by agent in a team digest), ACR
    trend: dict[Metric, MetricResult]  # by week (month) over TREND_PERIODS, ending with the reported one
    since_reported: MetricResult | None = None  # weekly: the complete weeks after the reported one (still pending)


def reported_back(cadence: Cadence, as_of_us: int, zone: tzinfo) -> int:
    """How many periods back the reported one is: 1 (the last complete one), or for weeks, the latest whose
    contacts have all matured (its end + the window before as_of)."""
    back = 1
    while (
        cadence == "weekly" and local_midnight_us(bounds(cadence, as_of_us, zone, back)[1], zone) + WINDOW_US > as_of_us
    ):
        back += 1
    return back


def bounds(cadence: Cadence, as_of_us: int, zone: tzinfo, back: int) -> tuple[date, date]:
    """The local days ``[first, after)`` of the complete week (month) ``back`` periods before the current one."""
    today = local_date(as_of_us, zone)
    if cadence == "weekly":
        monday = today - timedelta(days=today.weekday())
        return monday - timedelta(weeks=back), monday - timedelta(weeks=back - 1)
    first = today.replace(day=1)
    for _ in range(back):
        first = previous_month(first)
    return first, next_month(first)


def gather(
    source: MetricSource, scope: str, cadence: Cadence, as_of_us: int, zone: tzinfo, compute_fn: Compute
) -> PeriodDigest:
    """Ask the engine every question of the digest for ``scope`` as of ``as_of_us``."""
    filters = scope_filters(scope)

    def ask(metric: Metric, first: date, after: date, by: Breakdown | None = None) -> MetricResult:
        since, until = local_midnight_us(first, zone), local_midnight_us(after, zone)
        return compute_fn(source, MetricQuery(metric, WINDOW_US, since, until, as_of_us, filters, by), zone)

    back = reported_back(cadence, as_of_us, zone)
    last = bounds(cadence, as_of_us, zone, back)
    before = bounds(cadence, as_of_us, zone, back + 1)
    trend_first = bounds(cadence, as_of_us, zone, back + TREND_PERIODS[cadence] - 1)[0]
    since_reported = ask("acr", last[1], bounds(cadence, as_of_us, zone, 1)[1]) if back > 1 else None
    unit: Breakdown = "week" if cadence == "weekly" else "month"
    return PeriodDigest(
        cadence=cadence,
        scope=scope,
        as_of_us=as_of_us,
        last={m: ask(m, *last) for m in METRICS},
        before={m: ask(m, *before) for m in METRICS},
        groups=ask("acr", *last, by="agent" if filters else "team"),
        trend={m: ask(m, trend_first, last[1], by=unit) for m in METRICS},
        since_reported=since_reported,
    )


def _period_name(digest: PeriodDigest, result: MetricResult, zone: tzinfo) -> str:
    first = from_us(result.since_us, zone).date()
    if digest.cadence == "monthly":
        return f"{first:%B %Y}"
    last = from_us(result.until_us - 1, zone).date()
    return f"week of {first:%a %Y-%m-%d} to {last:%a %Y-%m-%d}"


def _headline(
    metric: Metric, now: Counts, before: MetricResult, unit: str, target: float | None, data_since_us: int | None
) -> str:
    """``ACR (7-day window): 77.6% ▼13.3 pts (95% CI …, n=…); 2.4 points below the 80% target; vs the week
    before (90.9%): down 13.3 points, significant; 12 pending`` — one rule for changes (``change_words``)."""
    change = change_between(now, before.total)
    moved = ""
    if change.points is not None:
        moved = (
            " " + ("▲" if change.points > 0 else "▼" if change.points < 0 else "=") + f"{abs(change.points):.1f} pts"
        )
    if far_less_data(now, before.total, data_since_us, before.since_us):
        versus = f"the {unit} before has far less data (n={before.total.matured:,}: the data starts inside it)"
        moved = ""
    else:
        words = change_words(now, before.total)
        versus = (
            f"vs the {unit} before ({percent(before.total.rate)}): {words}"
            if words
            else (f"no rate the {unit} before to compare with")
        )
    goal = target_words(now.rate, target)
    return (
        f"{METRIC_NAMES[metric]}: {percent(now.rate)}{moved} (95% CI {interval_span(now, none='no interval')}, "
        f"n={now.matured:,}){'; ' + goal if goal else ''}; {versus}; {now.pending:,} pending"
    )


def _group_lines(digest: PeriodDigest, min_sample: int) -> list[str]:
    rows = sorted(
        digest.groups.rows,
        key=lambda r: (r.counts.rate is None, r.counts.rate if r.counts.rate is not None else 0.0, r.key),
    )
    name = "Agent" if digest.scope else "Team"
    lines = [f"{name:<20}  {'ACR 7d':>7}  {'95% CI':>11}  {'n':>7}"]
    for row in rows[:MAX_GROUP_LINES]:
        mark = "*" if row.counts.matured < min_sample else " "
        lines.append(
            f"{cell(row.key, 20):<20}  {percent(row.counts.rate):>7}  {interval_span(row.counts, 0, '–'):>11}  "
            f"{row.counts.matured:>7,}{mark}".rstrip()
        )
    if len(rows) > MAX_GROUP_LINES:
        lines.append(f"… {len(rows) - MAX_GROUP_LINES} more not shown")
    return lines


def render(
    digest: PeriodDigest,
    zone: tzinfo,
    min_sample: int,
    targets: Mapping[Metric, float | None] | None = None,
    data_since_us: int | None = None,
) -> Message:
    """The digest as Block Kit (for Slack) and as plain text (for ``--dry-run`` and the README example);
    ``targets`` are fractions, ``data_since_us`` the start of the stored data (a previous period mostly before it
    is not compared)."""
    goals = targets or {}
    unit = "week" if digest.cadence == "weekly" else "month"
    period = _period_name(digest, digest.last["acr"], zone)
    title = f"ACR {digest.cadence} digest — {scope_label(digest.scope)} — {period}"
    headlines = [
        _headline(m, digest.last[m].total, digest.before[m], unit, goals.get(m), data_since_us) for m in METRICS
    ]
    table_title = (
        f"By {'agent' if digest.scope else 'team'}, {period} (worst first; * fewer than {min_sample} matured):"
    )
    table = _group_lines(digest, min_sample)
    later = digest.since_reported
    recent = None
    if later is not None:
        volume = later.total.matured + later.total.pending
        recent = (
            f"This is the latest week whose 7-day window has closed. Since then "
            f"({period_words(later.since_us, later.until_us, zone)}): {volume:,} contacts, "
            f"{later.total.pending:,} of them still pending."
        )
    trend_note = (
        f"The {TREND_PERIODS[digest.cadence]}-{unit} trend chart is in the thread (a {unit} with fewer than "
        f"{min_sample} matured contacts is drawn hollow, off the line)."
    )
    footer = (
        f"As of {from_us(digest.as_of_us, zone):%Y-%m-%d %H:%M %Z} · {unit}s in {getattr(zone, 'key', zone)}, "
        f"{'Monday to Sunday' if unit == 'week' else 'calendar months'} · a contact counts once its 7-day window "
        "has closed; significance: two-proportion z-test, p < 0.05"
    )
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": False}},
        section("\n".join(f"• {escape(h)}" for h in headlines)),
    ]
    if recent is not None:
        blocks.append(context(escape(recent)))
    if digest.groups.rows:
        body = "\n".join(escape(line) for line in table)
        blocks.append(section(f"{escape(table_title)}\n```{body}```"))
    blocks += [context(escape(trend_note)), context(escape(footer))]
    lines = [title, "", *headlines, *([recent] if recent else []), ""]
    if digest.groups.rows:
        lines += [table_title, *table, ""]
    lines += [trend_note, "", footer]
    first = digest.last["acr"].total
    return Message(blocks=blocks, text=f"{title}: ACR {percent(first.rate)}", plain="\n".join(lines))


def chart(
    digest: PeriodDigest, zone: tzinfo, min_sample: int, targets: Mapping[Metric, float | None] | None = None
) -> bytes:
    """The trend: ACR and tier-1 per week (month) with ACR's 95% band, the targets, small samples hollow."""
    unit = "week" if digest.cadence == "weekly" else "month"
    rows = {m: digest.trend[m].rows for m in METRICS}
    return trend_png(
        TrendChart(
            title=f"ACR and tier-1 resolution per {unit}, last {TREND_PERIODS[digest.cadence]} {unit}s — "
            f"{scope_label(digest.scope)}",
            periods=[row.key for row in rows["acr"]],
            series=[
                Series(METRIC_NAMES["acr"], [row.counts for row in rows["acr"]]),
                Series(METRIC_NAMES["tier1"], [row.counts for row in rows["tier1"]], band=False),
            ],
            targets=target_lines(targets or {}),
            min_sample=min_sample,
            maturing=[row.counts.pending > 0 for row in rows["acr"]],
        )
    )

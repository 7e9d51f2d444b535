"""Replies a supervisor reads at a glance: Block Kit for Slack and the same reply as plain text. Pure, no I/O.

Every piece of user-controlled text (agent, team, queue names; the words typed) goes through ``escape`` or a
code span (``bot.presentation``), so nothing stored in the data can ping a channel, mention someone or inject
formatting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from bot.charts import BarChart, Series, TrendChart, bars_png, target_lines, trend_png
from bot.presentation import (
    Block,
    Message,
    cell,
    change_words,
    code,
    context,
    day_words,
    escape,
    instant_words,
    interval_span,
    interval_words,
    length_words,
    percent,
    period_words,
    plain,
    section,
    target_words,
)
from bot.sensitivity import headline, rate_lines, return_lines
from bot.slack.grammar import HELP_WORDS, LINK_USAGE, USAGE, Question, describe_window
from bot.why_report import contact_url, mask, row_line, summary_lines
from metrics.query import PERIOD_BREAKDOWNS, Breakdown, Counts, MetricResult, Row
from metrics.significance import far_less_data, versus_rest, worst_first_key
from metrics.timeutil import US_PER_DAY, from_us
from metrics.why import WhyRow, WhySummary
from metrics.windows import WindowSensitivity

MAX_ROWS = 20  # rows of a breakdown shown in Slack; the rest are counted in a note
TABLE_NAME_WIDTH = 16  # a name in the Slack table (cut with …): the table stays about 50 characters wide
SMALL_SAMPLE = 30  # fewer matured contacts than this: the rate is shown but marked as unreliable
METRIC_LABELS = {"acr": "ACR", "tier1": "Tier-1 resolution"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A computed answer: the question as asked, its result, and the previous period of the same length."""

    question: Question
    result: MetricResult
    previous: MetricResult | None = None
    notes: tuple[str, ...] = ()  # one-line hints under the answer (pending contacts, a name read in another case)
    target: float | None = None  # the metric's target (a fraction), from TARGET_ACR / TARGET_TIER1
    data_since_us: int | None = None  # the start of the earliest stored contact: does the previous period have data?


def _scope(question: Question, mark: Any) -> str:
    parts = [f"{dimension} {mark(value)}" for dimension, value in question.filters]
    return ", ".join(parts) if parts else "all agents"


def trend_mark(answer: Answer) -> str:
    """`` ▼0.7 pts`` beside the big number: the change from the previous period of the same length (its
    significance is in the compare line); empty when either period has no rate, or when the previous period has
    far less data (the compare line then says there is no comparison)."""
    previous = answer.previous
    rate = answer.result.total.rate
    if previous is None or rate is None or previous.total.rate is None:
        return ""
    if far_less_data(answer.result.total, previous.total, answer.data_since_us, previous.since_us):
        return ""
    points = round((rate - previous.total.rate) * 100, 1)
    if points == 0:
        return " ±0.0 pts"
    return f" {'▲' if points > 0 else '▼'}{abs(points):.1f} pts"


def _counts_sentence(metric: str, counts: Counts, window: str) -> str:
    """Matured / resolved / pending in words, e.g. "8 of 10 matured contacts had no repeat within 7 days"."""
    short = re.sub(r"(\d+) (day|hour)s?", r"\1-\2", window)
    if counts.matured == 0:
        if not counts.pending:
            return "No contacts in this scope and period."
        return (
            f"No contact has matured yet: all {counts.pending:,} are pending (their {short} window has not "
            "closed), so there is no rate."
        )
    pending = ""
    if counts.pending:
        pending = (
            f" {counts.pending:,} more {'is' if counts.pending == 1 else 'are'} pending (the {short} window "
            "has not closed yet) and not counted."
        )
    if metric == "tier1":
        done = (
            f"{counts.resolved:,} of {counts.matured:,} matured tier-1 contacts were resolved at tier 1 "
            f"(not escalated, not marked unresolved, no repeat within {window})."
        )
    else:
        done = f"{counts.resolved:,} of {counts.matured:,} matured contacts had no repeat contact within {window}."
    return done + pending


# --- the answer ----------------------------------------------------------------------------------------


def _lines(answer: Answer, zone: tzinfo, mark: Any) -> dict[str, str]:
    """The reply's sentences, shared by the blocks and the plain text (``mark`` renders a name)."""
    question, result = answer.question, answer.result
    total = result.total
    window = describe_window(result.query.window_us)
    dates = period_words(result.since_us, result.until_us, zone)
    calendar = question.since is not None or question.until is not None
    lines = {
        "title": f"{METRIC_LABELS[question.metric]} {percent(total.rate)}{trend_mark(answer)}",
        "scope": _scope(question, mark),
        "counts": _counts_sentence(question.metric, total, window),
        "interval": interval_words(total),
        "period": f"{dates if calendar else question.period_words() + ': ' + dates}; repeat window {window}",
    }
    target = target_words(total.rate, answer.target)
    if target is not None:
        lines["target"] = target[0].upper() + target[1:] + "."
    if answer.previous is not None:
        lines["compare"] = compare_words(total, answer.previous, answer.data_since_us, zone)
    return lines


# --- files with the answer ------------------------------------------------------------------------------

TREND_DAYS_MAX = 92  # a chart of a longer period without a breakdown is drawn by week, over 2 years by month


def trend_breakdown(length_us: int) -> Breakdown:
    """How a ``chart`` without a breakdown is drawn: by day up to ~3 months, by week up to 2 years, else by month."""
    days = length_us / US_PER_DAY
    return "day" if days <= TREND_DAYS_MAX else "week" if days <= 731 else "month"


def chart_title(answer: Answer, zone: tzinfo) -> str:
    """``ACR by week — team billing — 2026-01-05 to 2026-03-29 (7-day window)``."""
    result = answer.result
    by = f" by {result.query.by}" if result.query.by else ""
    window = describe_window(result.query.window_us).replace(" days", "-day").replace(" day", "-day")
    window = window.replace(" hours", "-hour").replace(" hour", "-hour")
    period = period_words(result.since_us, result.until_us, zone)
    return f"{METRIC_LABELS[result.query.metric]}{by} — {_scope(answer.question, str)} — {period} ({window} window)"


def file_stem(answer: Answer, zone: tzinfo) -> str:
    """A file name a spreadsheet or a slide deck is happy with: ``acr-by-week-team-billing-2026-03-09``."""
    query = answer.result.query
    parts = [query.metric, *(["by", query.by] if query.by else []), *(f"{d}-{v}" for d, v in query.filters)]
    parts.append(from_us(query.as_of_us, zone).date().isoformat())
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)).strip("-")[:120]


def answer_chart(answer: Answer, zone: tzinfo, min_sample: int) -> bytes:
    """A PNG of the answer: a trend for ``by:day|week|month``, bars for a breakdown (of its rows); the metric's
    target (TARGET_ACR / TARGET_TIER1) as a dashed line when it is set."""
    result = answer.result
    targets = target_lines({result.query.metric: answer.target})
    title = chart_title(answer, zone)
    if result.query.by in PERIOD_BREAKDOWNS:
        label = f"{METRIC_LABELS[result.query.metric]} per {result.query.by}"
        return trend_png(
            TrendChart(
                title=title,
                periods=[row.key for row in result.rows],
                series=[Series(label, [row.counts for row in result.rows])],
                targets=targets,
                min_sample=min_sample,
                maturing=[row.counts.pending > 0 for row in result.rows],
            )
        )
    ranked = ranked_rows(answer)[:MAX_ROWS]
    return bars_png(BarChart(title, [(row.key, row.counts) for row in ranked], targets, min_sample))


def windows_message(found: WindowSensitivity, answer: Answer, zone: tzinfo) -> Message:
    """``/acr windows``: the rate for each window on one cohort, and how soon customers came back."""
    question = answer.question
    title = f"{METRIC_LABELS[question.metric]} by repeat window"
    scope = _scope(question, code)
    cohort = escape(headline(found, zone))
    rates = "\n".join(escape(line) for line in rate_lines(found))
    returns = "\n".join(escape(line) for line in return_lines(found))
    asked = f"{question.command} {question.words}".strip()
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": False}},
        section(f"*Scope:* {scope}\n{cohort}"),
        section(f"*Rate per window:*\n```\n{rates}\n```"),
        section(
            f"*Time to return* (first repeat after the contact ended, any metric's contacts):\n```\n{returns}\n```"
        ),
    ]
    if answer.notes:
        blocks.append(context(escape(" ".join(answer.notes))))
    blocks.append(context(f"As of {instant_words(found.query.as_of_us, zone)} · asked: {code(asked)}"))
    text_lines = [f"{title}  ({_scope(question, plain)})", headline(found, zone), "", *rate_lines(found), ""]
    text_lines += ["Time to return (first repeat after the contact ended):", *return_lines(found)]
    text_lines += [plain(note) for note in answer.notes]
    text_lines.append(f"As of {instant_words(found.query.as_of_us, zone)}")
    return Message(blocks=blocks, text=f"{title} · {scope}", plain="\n".join(text_lines))


def pending_hint(answer: Answer) -> str | None:
    """When most of the question's contacts are still pending, say so and offer the matured equivalent
    (``last:7d`` with a 7-day window: ``matured:7d``, the latest 7 days whose window has closed)."""
    question, total = answer.question, answer.result.total
    counted = total.matured + total.pending
    if question.matured_days is not None or counted == 0 or total.pending * 2 < counted:
        return None
    length_us = answer.result.until_us - answer.result.since_us
    days = max(1, -(-length_us // US_PER_DAY))
    share = "All" if total.matured == 0 else "Most"
    window = describe_window(answer.result.query.window_us)
    return (
        f"{share} of these contacts ({total.pending:,} of {counted:,}) are still pending: their {window} "
        f"window has not closed. For a rate now, ask about the latest days that have matured: "
        f"{question.matured_words(days)}"
    )


def compare_words(now: Counts, previous: MetricResult, data_since_us: int | None, zone: tzinfo) -> str:
    """``Previous 30 days (dates): 75.3% (1,204 matured), down 2.3 points, not significant (p = 0.19).``"""
    before = previous.total
    length = length_words(previous.until_us - previous.since_us)
    where = f"Previous {length} ({period_words(previous.since_us, previous.until_us, zone)})"
    if far_less_data(now, before, data_since_us, previous.since_us):
        assert data_since_us is not None
        return (
            f"{where}: far less data ({before.matured:,} matured; the data starts "
            f"{day_words(data_since_us, zone)}, inside it), so no comparison."
        )
    change = change_words(now, before)
    was = f"{percent(before.rate)} ({before.matured:,} matured)" if before.rate is not None else "no data"
    return f"{where}: {was}" + (f", {change}." if change else ".")


def answer_message(answer: Answer, zone: tzinfo) -> Message:
    """The reply to a metric question, as Block Kit and as plain text."""
    lines = _lines(answer, zone, code)
    result = answer.result
    asked = f"{answer.question.command} {answer.question.words}".strip()
    summary = [f"*Scope:* {lines['scope']}", lines["counts"], lines["interval"].capitalize() + "."]
    if "target" in lines:
        summary.append(lines["target"])
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": lines["title"], "emoji": False}},
        section("\n".join(summary)),
        context("Period: " + lines["period"]),
    ]
    if "compare" in lines:
        blocks.append(section(lines["compare"]))
    if answer.notes:
        blocks.append(context(escape(" ".join(answer.notes))))
    if result.query.by is not None:
        blocks.extend(_table_blocks(answer, MAX_ROWS))
    blocks.append(context(f"As of {instant_words(result.query.as_of_us, zone)} · asked: {code(asked)}"))
    text = f"{lines['title']} · {lines['scope']} · {lines['interval']}"
    return Message(blocks=blocks, text=text, plain=answer_text(answer, zone))


def answer_text(answer: Answer, zone: tzinfo, max_rows: int = MAX_ROWS) -> str:
    """The same reply as plain text, for ``acr-bot ask`` and for logs in offline mode."""
    lines = _lines(answer, zone, plain)
    out = [f"{lines['title']}  ({lines['scope']})", lines["counts"], lines["interval"].capitalize() + "."]
    if "target" in lines:
        out.append(lines["target"])
    out.append("Period: " + lines["period"])
    if "compare" in lines:
        out.append(lines["compare"])
    out.extend(plain(note) for note in answer.notes)
    if answer.result.query.by is not None:
        table, notes = _table(answer, max_rows)
        out.append("")
        out.extend(table)
        out.extend(notes)
    out.append(f"As of {instant_words(answer.result.query.as_of_us, zone)}")
    return "\n".join(out)


def ranked_rows(answer: Answer) -> list[Row]:
    """Worst first by the upper end of the 95% interval, so a tiny sample cannot top the list (rows with no data
    last; see ``metrics.significance.worst_first_key``); ``by:day|week|month`` stay in date order, a series."""
    rows = answer.result.rows
    if answer.result.query.by in PERIOD_BREAKDOWNS:
        return list(rows)
    return sorted(rows, key=lambda row: (*worst_first_key(row.counts), row.key))


_VERSUS_MARKS = {"below": "▼", "above": "▲", None: ""}


def _table(answer: Answer, max_rows: int) -> tuple[list[str], list[str]]:
    """The breakdown as monospaced lines, and the notes under it (small samples, rows left out)."""
    by = answer.result.query.by or ""
    rows = ranked_rows(answer)
    series = by in PERIOD_BREAKDOWNS
    shown = rows[-max_rows:] if series else rows[:max_rows]  # a series keeps its latest periods
    # About 50 characters wide, so a phone shows a row on one line: a period needs no rank, a name gets 16.
    width = 10 if series else TABLE_NAME_WIDTH
    rank_width = 0 if series else 3
    place = " # " if rank_width else ""
    lines = [f"{place}{by:<{width}} {'rate':>8} {'95% CI':>7} {'matured':>7} {'pending':>7}"]
    small = False
    marked: set[str | None] = set()
    for rank, row in enumerate(shown, start=1):
        counts = row.counts
        is_small = 0 < counts.matured < SMALL_SAMPLE
        small = small or is_small
        versus = versus_rest(counts, answer.result.total)
        marked.add(versus)
        rate = percent(counts.rate).replace("no data", "–") + ("†" if is_small else "") + _VERSUS_MARKS[versus]
        place = f"{rank:>2} " if rank_width else ""
        lines.append(
            f"{place}{cell(row.key, width):<{width}} {rate:>8} {interval_span(counts, 0, '–'):>7} "
            f"{counts.matured:>7,} {counts.pending:>7,}"
        )
    notes: list[str] = []
    if not rows:
        notes.append(f"No {by} values in this scope.")
    if small:
        notes.append(f"† fewer than {SMALL_SAMPLE} matured contacts: read with care.")
    if marked - {None}:
        notes.append("▼/▲ significantly below/above the rest of this scope (p < 0.05).")
    if len(rows) > len(shown):
        left = len(rows) - len(shown)
        if series:
            notes.append(
                f"The {left} earliest {by}{'s' if left != 1 else ''} not shown; "
                f"ask a shorter period{' or by:week' if by == 'day' else ''} for them."
            )
        else:
            notes.append(f"{left} more row{'s' if left != 1 else ''} not shown; narrow the scope for them.")
    return lines, notes


def _table_blocks(answer: Answer, max_rows: int) -> list[Block]:
    lines, notes = _table(answer, max_rows)
    by = answer.result.query.by
    title = f"By {by}" if by in PERIOD_BREAKDOWNS else f"Worst first, by {by}"
    body = "\n".join(escape(line) for line in lines)
    blocks: list[Block] = [section(f"*{title}:*\n```\n{body}\n```")]
    if notes:
        blocks.append(context(escape(" ".join(notes))))
    return blocks


# --- help ----------------------------------------------------------------------------------------------


def help_text() -> str:
    width = max(len(word) for word in HELP_WORDS)
    lines = [USAGE, ""]
    lines.extend(f"  {word:<{width}}  {meaning}" for word, meaning in HELP_WORDS.items())
    lines.extend(
        [
            "",
            "Examples: /acr 7d · /acr agent:maria last:14d · /acr team:billing by:agent · /tier1 me by:day share",
            LINK_USAGE,
        ]
    )
    return "\n".join(lines)


def help_message() -> Message:
    rows = "\n".join(f"`{escape(word)}`  {escape(meaning)}" for word, meaning in HELP_WORDS.items())
    blocks: list[Block] = [
        section(f"*{escape(USAGE)}*"),
        section(rows),
        context(
            "Examples: `/acr 7d` · `/acr agent:maria last:14d` · `/acr team:billing by:agent` · "
            "`/tier1 me by:day share`. " + escape(LINK_USAGE)
        ),
    ]
    return Message(blocks=blocks, text=escape(USAGE), plain=help_text())


# --- why -----------------------------------------------------------------------------------------------

WHY_ROWS_SHOWN = 10  # rows of ``why`` in the reply; every row is in the CSV file
_SECTION_CHARS = 2900  # Slack refuses a section text over 3,000 characters


@dataclass(frozen=True, slots=True)
class WhyAnswer:
    """An answer with what drives it: the summary of every row, the first rows, each reason's own counts."""

    answer: Answer
    summary: WhySummary
    first: list[WhyRow]
    by_reason: dict[str, Counts]
    shared: bool  # the CSV goes in the reply's thread (else by direct message)


def why_message(why: WhyAnswer, zone: tzinfo, *, masked: bool, url_template: str | None) -> Message:
    """The answer as usual, then why: the summary, the first rows (customer ids masked unless ``masked`` is off,
    contact ids linked with CONTACT_URL_TEMPLATE) and where the CSV of every row went."""
    base = answer_message(why.answer, zone)
    summary = why.summary
    lines = summary_lines(summary, why.answer.result.total.matured, why.by_reason)
    show_customer = mask if masked else str

    def linked_id(row: WhyRow) -> str:
        url = contact_url(url_template, row.source, row.id)
        shown = escape(row.id).replace("|", "¦")
        return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{shown}>" if url else shown

    row_lines = [row_line(row, zone, escape, show_customer, linked_id) for row in why.first]
    while row_lines and sum(len(line) + 1 for line in row_lines) > _SECTION_CHARS:
        row_lines.pop()
    where = "a CSV file in this thread" if why.shared else "in a CSV file"  # else the DM note follows (commands)
    note = f"All {summary.rows:,} rows: {where}." if summary.rows else "No rows: nothing behind this number."
    blocks = [*base.blocks[:-1], section(("*Why:* " + "\n".join(escape(line) for line in lines))[:_SECTION_CHARS])]
    if row_lines:
        blocks.append(
            section(f"*First {len(row_lines)} of {summary.rows:,}* (started, contact, agent, customer, reason):")
        )
        blocks.append(section("\n".join(row_lines)))
    blocks += [context(escape(note)), base.blocks[-1]]
    plain_rows = [row_line(row, zone, plain, show_customer, lambda r: plain(r.id)) for row in why.first]
    text = "\n".join([base.plain, "", "Why:", *(plain(line) for line in lines), *plain_rows, note])
    return Message(blocks=blocks, text=base.text, plain=text)

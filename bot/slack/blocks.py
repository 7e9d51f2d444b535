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

from bot.presentation import (
    NAME_WIDTH,
    Block,
    Message,
    cell,
    change_words,
    code,
    context,
    escape,
    instant_words,
    interval_span,
    interval_words,
    length_words,
    percent,
    period_words,
    plain,
    section,
)
from bot.slack.grammar import HELP_WORDS, LINK_USAGE, USAGE, Question, describe_window
from metrics.query import Counts, MetricResult, Row

MAX_ROWS = 20  # rows of a breakdown shown in Slack; the rest are counted in a note
SMALL_SAMPLE = 30  # fewer matured contacts than this: the rate is shown but marked as unreliable
METRIC_LABELS = {"acr": "ACR", "tier1": "Tier-1 resolution"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A computed answer: the question as asked, its result, and the previous period of the same length."""

    question: Question
    result: MetricResult
    previous: MetricResult | None = None


def _scope(question: Question, mark: Any) -> str:
    parts = [f"{dimension} {mark(value)}" for dimension, value in question.filters]
    return ", ".join(parts) if parts else "all agents"


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
        "title": f"{METRIC_LABELS[question.metric]} {percent(total.rate)}",
        "scope": _scope(question, mark),
        "counts": _counts_sentence(question.metric, total, window),
        "interval": interval_words(total),
        "period": f"{dates if calendar else question.period_words() + ': ' + dates}; repeat window {window}",
    }
    if answer.previous is not None:
        before = answer.previous.total
        length = length_words(answer.previous.until_us - answer.previous.since_us)
        change = change_words(total, before)
        was = f"{percent(before.rate)} ({before.matured:,} matured)" if before.rate is not None else "no data"
        lines["compare"] = (
            f"Previous {length} ({period_words(answer.previous.since_us, answer.previous.until_us, zone)}): {was}"
            + (f", {change}." if change else ".")
        )
    return lines


def answer_message(answer: Answer, zone: tzinfo) -> Message:
    """The reply to a metric question, as Block Kit and as plain text."""
    lines = _lines(answer, zone, code)
    result = answer.result
    asked = f"{answer.question.command} {answer.question.words}".strip()
    summary = [f"*Scope:* {lines['scope']}", lines["counts"], lines["interval"].capitalize() + "."]
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": lines["title"], "emoji": False}},
        section("\n".join(summary)),
        context("Period: " + lines["period"]),
    ]
    if "compare" in lines:
        blocks.append(section(lines["compare"]))
    if result.query.by is not None:
        blocks.extend(_table_blocks(answer, MAX_ROWS))
    blocks.append(context(f"As of {instant_words(result.query.as_of_us, zone)} · asked: {code(asked)}"))
    text = f"{lines['title']} · {lines['scope']} · {lines['interval']}"
    return Message(blocks=blocks, text=text, plain=answer_text(answer, zone))


def answer_text(answer: Answer, zone: tzinfo, max_rows: int = MAX_ROWS) -> str:
    """The same reply as plain text, for ``acr-bot ask`` and for logs in offline mode."""
    lines = _lines(answer, zone, plain)
    out = [f"{lines['title']}  ({lines['scope']})", lines["counts"], lines["interval"].capitalize() + "."]
    out.append("Period: " + lines["period"])
    if "compare" in lines:
        out.append(lines["compare"])
    if answer.result.query.by is not None:
        table, notes = _table(answer, max_rows)
        out.append("")
        out.extend(table)
        out.extend(notes)
    out.append(f"As of {instant_words(answer.result.query.as_of_us, zone)}")
    return "\n".join(out)


def ranked_rows(answer: Answer) -> list[Row]:
    """Worst first (lowest rate; rows with no data last); ``by:day`` stays in date order, a time series."""
    rows = answer.result.rows
    if answer.result.query.by == "day":
        return list(rows)

    def key(row: Row) -> tuple[int, float, int, str]:
        rate = row.counts.rate
        return (rate is None, rate if rate is not None else 0.0, -row.counts.matured, row.key)

    return sorted(rows, key=key)


def _table(answer: Answer, max_rows: int) -> tuple[list[str], list[str]]:
    """The breakdown as monospaced lines, and the notes under it (small samples, rows left out)."""
    by = answer.result.query.by or ""
    rows = ranked_rows(answer)
    shown = rows[:max_rows]
    header = f"{'#':>3}  {by:<{NAME_WIDTH}}  {'rate':>8}  {'95% interval':>13}  {'matured':>8}  {'pending':>7}"
    lines = [header]
    small = False
    for rank, row in enumerate(shown, start=1):
        counts = row.counts
        span = interval_span(counts, digits=0, none="–")
        is_small = 0 < counts.matured < SMALL_SAMPLE
        flag = " †" if is_small else "  "
        small = small or is_small
        lines.append(
            f"{rank:>3}  {cell(row.key):<{NAME_WIDTH}}  {percent(counts.rate):>8}{flag}"
            f"{span:>13}  {counts.matured:>8,}  {counts.pending:>7,}"
        )
    notes: list[str] = []
    if not rows:
        notes.append(f"No {by} values in this scope.")
    if small:
        notes.append(f"† fewer than {SMALL_SAMPLE} matured contacts: read with care.")
    if len(rows) > len(shown):
        left = len(rows) - len(shown)
        notes.append(
            f"{left} more row{'s' if left != 1 else ''} not shown; narrow the scope, or run "
            f"`acr-bot report {answer.question.metric} --by {by}` for all of them."
        )
    return lines, notes


def _table_blocks(answer: Answer, max_rows: int) -> list[Block]:
    lines, notes = _table(answer, max_rows)
    by = answer.result.query.by
    title = "By day" if by == "day" else f"Worst first, by {by}"
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

"""The App Home tab, read at a glance (under 20 blocks): an agent sees "you against your team", a supervisor the
teams and the weakest agents."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.presentation import (
    Block,
    cell,
    change_words,
    code,
    context,
    escape,
    interval_span,
    length_words,
    percent,
    section,
    target_words,
)
from bot.slack.answers import Answerer
from bot.slack.blocks import MAX_ROWS, Answer, ranked_rows, trend_mark
from bot.slack.commands import acknowledge
from bot.slack.grammar import Question
from metrics.errors import UserError
from metrics.query import METRICS, Counts, Metric
from metrics.significance import far_less_data, worst_first_key

log = logging.getLogger("acr_bot.slack")
REFRESH_ACTION = "home_refresh"


def register(app: App, answerer: Answerer) -> None:
    def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        publish_home(answerer, app.client, event["user"])

    app.event("app_home_opened")(ack=acknowledge, lazy=[home_opened])


def publish_home(answerer: Answerer, client: WebClient, user_id: str, as_of_us: int | None = None) -> None:
    """Build the caller's Home and publish it; failures are logged with an id, never raised into bolt."""
    view = home_view(answerer, user_id, as_of_us)
    try:
        client.views_publish(user_id=user_id, view=view)
    except Exception:
        log.exception("could not publish the App Home of %s", user_id)


WEAKEST_AGENTS = 5
MAX_HOME_BLOCKS = 20  # a Home read at a glance: the view stays well under Slack's 100


def home_view(answerer: Answerer, user_id: str, as_of_us: int | None = None) -> dict[str, Any]:
    """An agent sees "you against your team"; a supervisor the teams and the weakest agents (last 30 days)."""
    now = answerer.now_us(as_of_us)
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text", "text": "ACR Bot"}}]
    agent = answerer.caller_agent(user_id)
    everyone = answerer.supervisors.allows(user_id)
    if agent is not None:
        blocks.extend(_guarded(lambda: _you_and_your_team(answerer, agent, now)))
        blocks.append({"type": "divider"})
    if everyone:
        blocks.extend(_guarded(lambda: _teams_and_weakest(answerer, now)))
        blocks.append({"type": "divider"})
    if agent is None and not everyone:
        blocks.append(
            section(
                "Your Slack user is not linked to an agent name yet, so there is nothing personal to show. "
                "A supervisor can link you with `/acr link @you agent:NAME`; then `/acr me` and this tab show "
                "your numbers."
            )
        )
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {"type": "button", "action_id": REFRESH_ACTION, "text": {"type": "plain_text", "text": "Refresh"}}
            ],
        }
    )
    blocks.append(context("Last 30 days, 7-day repeat window · `/acr help` for every question you can ask"))
    return {"type": "home", "blocks": blocks[:MAX_HOME_BLOCKS]}


def _you_and_your_team(answerer: Answerer, agent: str, now: int) -> list[Block]:
    """The agent's ACR and tier-1 rate beside those of their team (the team most of their contacts had)."""
    mine = {m: answerer.compute_answer(Question(m, filters=(("agent", agent),)), now) for m in METRICS}
    teams = answerer.compute_answer(Question("acr", filters=(("agent", agent),), by="team"), now).result.rows
    team = max(teams, key=lambda row: row.counts.matured + row.counts.pending).key if teams else None
    lines = [_line(f"you ({agent})", mine)]
    if team is not None:
        theirs = {m: answerer.compute_answer(Question(m, filters=(("team", team),)), now) for m in METRICS}
        lines.append(_line(f"team {team}", theirs))
    table = "\n".join(escape(line) for line in [f"{'':<22} {'ACR':>17} {'Tier-1':>17}", *lines])
    blocks = [section(f"*You against your team* (agent {code(agent)})\n```\n{table}\n```")]
    summary = _summary_line(mine)
    if summary:
        blocks.append(context(escape(f"You: {summary}.")))
    return blocks


def _teams_and_weakest(answerer: Answerer, now: int) -> list[Block]:
    """Every team worst first, and the weakest agents among those with enough matured contacts (worst first by the
    upper end of the 95% interval, as every breakdown)."""
    acr = answerer.compute_answer(Question("acr", by="team"), now)
    tier1 = {row.key: row.counts for row in answerer.compute_answer(Question("tier1", by="team"), now).result.rows}
    rows = ranked_rows(acr)
    lines = [f"{'team':<16} {'ACR':>7} {'n':>7} {'Tier-1':>7}"]
    for row in rows[:MAX_ROWS]:
        lines.append(
            f"{cell(row.key, 16):<16} {percent(row.counts.rate):>7} {row.counts.matured:>7,} "
            f"{percent(tier1.get(row.key, Counts()).rate):>7}"
        )
    blocks = [section("*Teams*, worst ACR first\n```\n" + "\n".join(escape(line) for line in lines) + "\n```")]
    center: dict[Metric, Answer] = {"acr": acr, "tier1": answerer.compute_answer(Question("tier1"), now)}
    summary = _summary_line(center)
    if summary:
        blocks.append(context(escape(f"All teams: {summary}.")))
    agents = answerer.compute_answer(Question("acr", by="agent"), now).result.rows
    minimum = answerer.settings.digest_min_sample
    eligible = sorted(
        (row for row in agents if row.counts.matured >= minimum and row.counts.rate is not None),
        key=lambda row: (*worst_first_key(row.counts), row.key),  # the breakdowns' rule (metrics.significance)
    )[:WEAKEST_AGENTS]
    if eligible:
        weakest = [
            f"{cell(row.key, 16):<16} {percent(row.counts.rate):>7} {interval_span(row.counts, 0, '–'):>9} "
            f"{row.counts.matured:>7,}"
            for row in eligible
        ]
        body = "\n".join(escape(line) for line in weakest)
        blocks.append(section(f"*Weakest agents* (at least {minimum} matured contacts)\n```\n{body}\n```"))
    return blocks


def _summary_line(answers: dict[Metric, Answer]) -> str:
    """What the arrows mean and how far the targets are: ``ACR down 0.7 points, not significant (p = 0.41), vs the
    30 days before, 3.3 points below the 80% target; tier-1 ...`` (the replies' rules: ``change_words``, the
    far-less-data check, ``target_words``)."""
    names = {"acr": "ACR", "tier1": "tier-1"}
    parts = []
    for metric, answer in answers.items():
        words = []
        previous = answer.previous
        now = answer.result.total
        if previous is not None and not far_less_data(now, previous.total, answer.data_since_us, previous.since_us):
            change = change_words(now, previous.total)
            if change is not None:
                words.append(f"{change}, vs the {length_words(previous.until_us - previous.since_us)} before")
        goal = target_words(now.rate, answer.target)
        if goal is not None:
            words.append(goal)
        if words:
            parts.append(f"{names[metric]} " + ", ".join(words))
    return "; ".join(parts)


def _line(label: str, answers: dict[Metric, Answer]) -> str:
    cells = [f"{percent(a.result.total.rate)}{trend_mark(a)}" for a in answers.values()]
    return f"{cell(label, 22):<22} " + " ".join(f"{c:>17}" for c in cells)


def _guarded(build: Callable[[], list[Block]]) -> list[Block]:
    """A part of the Home that cannot be computed says so (with a request id) instead of hiding the rest."""
    try:
        return build()
    except UserError as problem:
        return [section(f":warning: {escape(str(problem))}")]
    except Exception:
        rid = uuid.uuid4().hex[:12]
        log.exception("request %s: App Home failed", rid)
        return [section(f":x: Could not compute this (request id {rid}).")]

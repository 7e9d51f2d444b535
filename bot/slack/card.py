"""The agent scorecard as a Slack message (and as plain text for ``acr-bot ask``): each rate beside the team's and
the center's with whether the difference is significant, the volume, the last 8 weeks and the top repeat reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo

from bot.presentation import (
    Block,
    Message,
    cell,
    code,
    context,
    escape,
    instant_words,
    interval_span,
    p_value_words,
    percent,
    plain,
    section,
)
from bot.slack.blocks import SMALL_SAMPLE
from metrics.query import Counts
from metrics.scorecard import TREND_WEEKS, Scorecard, ScoreLine, Versus

TREND_NAME_WIDTH = 12  # the agent's and the team's names over the trend's columns (cut with …)


def card_message(card: Scorecard, zone: tzinfo, asked: str, period: str) -> Message:
    """The card as Block Kit (``asked``: the command as typed; ``period``: how the period was asked)."""
    lines = card_lines(card, zone, period, escape, bold=True)
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Scorecard: {card.agent}"[:150], "emoji": False}},
        section("\n".join(lines["head"])),
        section("\n".join(lines["rates"])),
    ]
    if lines["notes"]:
        blocks.append(context(" ".join(lines["notes"])))
    blocks.append(section("\n".join([lines["trend_title"][0], "```", *lines["trend"], "```"])))
    blocks.append(section("\n".join(lines["reasons"])))
    blocks.append(context(f"As of {instant_words(card.as_of_us, zone)} · asked: {code(asked)}"))
    text = f"Scorecard: {escape(card.agent)} · " + plain(lines["rates"][1])
    return Message(blocks=blocks, text=text, plain=card_text(card, zone, period))


def card_text(card: Scorecard, zone: tzinfo, period: str) -> str:
    """The same card as plain text."""
    lines = card_lines(card, zone, period, plain, bold=False)
    out = [f"Scorecard: {plain(card.agent)}", *lines["head"], "", *lines["rates"], *lines["notes"], ""]
    out += [*lines["trend_title"], *lines["trend"], "", *lines["reasons"]]
    out.append(f"As of {instant_words(card.as_of_us, zone)}")
    return "\n".join(out)


def card_lines(
    card: Scorecard, zone: tzinfo, period: str, show: Callable[[str], str], *, bold: bool
) -> dict[str, list[str]]:
    """Every line of the card, names passed through ``show`` (escape for Slack, plain for a terminal)."""
    star = "*" if bold else ""
    team = f"team {show(card.team)}" if card.team is not None else "no team recorded"
    head = [
        f"{star}Agent:{star} {show(card.agent)} ({team}; the team is the one of most of the agent's contacts)",
        f"{star}Period:{star} {period} · compared with the rest of the team and of the center "
        "(their contacts without the agent's), p < 0.05 = significant",
    ]
    small = False
    rates = []
    for line in card.lines:
        small = small or 0 < line.agent.matured < SMALL_SAMPLE
        rates.append(_rate_line(line, card, show, star))
    volume = card.volume
    team_volume = (
        f"team {_per_agent(volume.team_per_agent)} per agent ({volume.team_agents:,} agents)"
        if card.team is not None
        else "no team"
    )
    rates.append(
        f"{star}Contacts{star} {volume.agent:,} · {team_volume} · center {_per_agent(volume.center_per_agent)} per "
        f"agent ({volume.center_agents:,} agents) (counts: no test)"
    )
    notes = [f"† fewer than {SMALL_SAMPLE} contacts: read with care."] if small else []
    trend_title = [f"{star}Last {TREND_WEEKS} weeks{star}, ACR 7 days by week (Monday; ‥ = still pending):"]
    reasons = [_reasons_line(card, show, star)]
    return {
        "head": head,
        "rates": rates,
        "notes": notes,
        "trend_title": trend_title,
        "trend": _trend_table(card, show),
        "reasons": reasons,
    }


def _rate_line(line: ScoreLine, card: Scorecard, show: Callable[[str], str], star: str) -> str:
    agent = line.agent
    mark = "†" if 0 < agent.matured < SMALL_SAMPLE else ""
    noun = "contacts" if line.lower_is_better else "matured"
    own = f"{star}{line.label}{star} {percent(agent.rate)}{mark}"
    if agent.rate is not None:
        own += f" ({interval_span(agent)}, {agent.matured:,} {noun})"
    if line.lower_is_better:
        own += ", lower is better"
    parts = [own]
    if line.team is not None and card.team is not None:
        parts.append(_versus_words(f"team {show(card.team)}", line.team, agent))
    parts.append(_versus_words("center", line.center, agent))
    return " · ".join(parts)


def _versus_words(name: str, against: Versus, agent: Counts) -> str:
    """``team billing 78.1%: 5.1 points below the rest, significant`` (or not, with its p-value)."""
    rate = f"{name} {percent(against.scope.rate)}"
    change = against.change
    if change.points is None or change.p_value is None:
        others = against.scope.matured - agent.matured
        return f"{rate} (no one else's contacts to compare with)" if others == 0 and agent.matured else rate
    size = abs(round(change.points, 1))
    side = "below" if change.points < 0 else "above"
    moved = "the same as the rest" if size == 0 else f"{size:.1f} point{'' if size == 1 else 's'} {side} the rest"
    verdict = "significant" if change.significant else f"not significant (p = {p_value_words(change.p_value)})"
    return f"{rate}: {moved}, {verdict}"


def _per_agent(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _trend_table(card: Scorecard, show: Callable[[str], str]) -> list[str]:
    """Week, the agent's rate, the team's rate, the agent's matured and pending: about 50 characters wide."""
    team = cell(card.team, TREND_NAME_WIDTH) if card.team is not None else "team"
    header = f"{'week':<10} {cell(card.agent, TREND_NAME_WIDTH):>12} {team:>12} {'matured':>7} {'pending':>7}"
    lines = [header]
    for week in card.trend:
        mine = _trend_rate(week.agent)
        theirs = _trend_rate(week.team) if week.team is not None else ""
        lines.append(f"{week.week:<10} {mine:>12} {theirs:>12} {week.agent.matured:>7,} {week.agent.pending:>7,}")
    return [show(line) for line in lines]


def _trend_rate(counts: Counts) -> str:
    rate = percent(counts.rate).replace("no data", "–")
    if 0 < counts.matured < SMALL_SAMPLE:
        rate += "†"
    return rate + ("‥" if counts.pending else "")


def _reasons_line(card: Scorecard, show: Callable[[str], str], star: str) -> str:
    """The reasons the agent's customers came back with (ACR 7 days), most first, each with its share."""
    title = f"{star}Top repeat reasons{star} (what customers came back for within 7 days, ACR 7 days):"
    if not card.repeats:
        return f"{title} none: no customer of these contacts came back within 7 days."
    shown = [
        f"{show(reason)} {count / card.repeats * 100:.0f}% ({count:,} of {card.repeats:,})"
        for reason, count in card.repeat_reasons
    ]
    return f"{title} " + "; ".join(shown) + "."

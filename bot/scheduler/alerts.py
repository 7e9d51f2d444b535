"""Threshold alerts: when a rule fires, reminds, recovers, and what it says. Pure, no I/O.

A rule fires once when its rate falls below the threshold with at least ``min_matured`` matured contacts (with
``strict``: when the whole 95% interval is below it, a drop that is not noise). While it keeps firing it reminds at
most once a day, in the same thread, unless snoozed or acknowledged. It recovers, in the thread, when the rate
rises to the threshold plus a hysteresis margin, so a rate hovering at the threshold does not flap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Literal

from bot.ports import ACK_ACTION, SNOOZE_ACTION
from bot.presentation import Block, change_words, context, escape, interval_span, percent, section
from bot.scheduler.digest import rule_words
from bot.storage.schedules import AlertRule, AlertState, OutboxMessage, scope_filters
from metrics.periods import last_period, local_date
from metrics.query import Counts, MetricQuery
from metrics.timeutil import US_PER_DAY, from_us

BUTTON_SNOOZE_HOURS = 24
REMIND_EVERY_US = US_PER_DAY
Transition = Literal["fire", "remind", "recover", "none"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of one evaluation: the transition, the rule's new state and the messages to post."""

    transition: Transition
    state: AlertState
    messages: list[OutboxMessage]
    counts: Counts
    reason: str  # why nothing happened, for logs and --dry-run


def alert_query(rule: AlertRule, now_us: int) -> MetricQuery:
    """The rule's question: the ``last_days`` most recent days of contacts whose repeat window has closed.

    ``last:7d`` in an alert cannot mean the 7 days before now, as a report does: with a 7-day window none of
    those contacts has matured yet, so the rate would never exist. It means the 7 days that end one window ago,
    ``[now − W − N days, now − W)``: the freshest rate there is.
    """
    until_us = now_us - rule.window_us
    since_us, until_us = last_period(rule.last_days, until_us)
    return MetricQuery(rule.metric, rule.window_us, since_us, until_us, now_us, scope_filters(rule.scope))


def is_below(rule: AlertRule, counts: Counts) -> bool:
    if counts.matured < rule.min_matured or counts.rate is None:
        return False
    if rule.strict:
        interval = counts.interval
        return interval is not None and interval[1] < rule.threshold
    return counts.rate < rule.threshold


def has_recovered(rule: AlertRule, counts: Counts, hysteresis_points: float) -> bool:
    if counts.matured < rule.min_matured or counts.rate is None:
        return False
    return counts.rate >= rule.threshold + hysteresis_points / 100


def evaluate(
    rule: AlertRule,
    counts: Counts,
    now_us: int,
    hysteresis_points: float,
    zone: tzinfo,
    before: Counts | None = None,
) -> Evaluation:
    """Decide what ``rule`` does now, given its rate's ``counts`` (and ``before``: the same length of time just
    before, which its messages compare with)."""
    state = replace(rule.state, last_rate=counts.rate, last_matured=counts.matured, evaluated_us=now_us)
    snoozed = rule.snoozed_until_us is not None and now_us < rule.snoozed_until_us
    below = is_below(rule, counts)
    if not state.firing:
        if not below:
            return Evaluation("none", state, [], counts, _quiet_reason(rule, counts))
        if snoozed:
            return Evaluation("none", state, [], counts, "below threshold but snoozed")
        episode = state.episode + 1
        state = replace(state, firing=True, episode=episode, fired_us=now_us, notified_us=now_us, acknowledged_by=None)
        fired = replace(rule, state=state)
        return Evaluation("fire", state, [_message(fired, counts, "fire", now_us, zone, before)], counts, "fired")
    if has_recovered(rule, counts, hysteresis_points):
        recovered = replace(rule, state=state)
        state = replace(state, firing=False)
        return Evaluation(
            "recover", state, [_message(recovered, counts, "recover", now_us, zone, before)], counts, "recovered"
        )
    if snoozed:
        return Evaluation("none", state, [], counts, "firing, snoozed")
    if state.acknowledged_by is not None:
        return Evaluation("none", state, [], counts, f"firing, acknowledged by {state.acknowledged_by}")
    if not below:
        return Evaluation("none", state, [], counts, "firing, back above the threshold but not above the margin")
    if state.notified_us is not None and now_us - state.notified_us < REMIND_EVERY_US:
        return Evaluation("none", state, [], counts, "firing, reminded less than a day ago")
    state = replace(state, notified_us=now_us)
    reminded = replace(rule, state=state)
    return Evaluation("remind", state, [_message(reminded, counts, "remind", now_us, zone, before)], counts, "reminded")


def _quiet_reason(rule: AlertRule, counts: Counts) -> str:
    if counts.matured < rule.min_matured:
        return f"only {counts.matured} matured contacts (min {rule.min_matured})"
    return f"at {percent(counts.rate)}, not below {rule.threshold * 100:g}%"


def thread_key(rule: AlertRule) -> str:
    return f"alert:{rule.id}:{rule.state.episode}:fire"


def message_key(rule: AlertRule, transition: Transition, now_us: int, zone: tzinfo) -> str:
    """Unique per rule, episode and transition (a reminder: per local day), so nothing is posted twice."""
    if transition == "fire":
        return thread_key(rule)
    if transition == "remind":
        return f"alert:{rule.id}:{rule.state.episode}:remind:{local_date(now_us, zone).isoformat()}"
    return f"alert:{rule.id}:{rule.state.episode}:{transition}"


def _message(
    rule: AlertRule, counts: Counts, transition: Transition, now_us: int, zone: tzinfo, before: Counts | None
) -> OutboxMessage:
    what = escape(rule_words(rule))
    rate = percent(counts.rate)
    ci = f"95% CI {interval_span(counts)}" if counts.interval else "no interval"
    query = alert_query(rule, now_us)
    since, until = from_us(query.since_us, zone), from_us(query.until_us, zone)
    detail = (
        f"{counts.resolved:,} of {counts.matured:,} matured contacts; {counts.pending:,} pending; {ci}; "
        f"contacts started {since:%a %m-%d %H:%M} to {until:%a %m-%d %H:%M %Z}"
    )
    change = change_words(counts, before)
    if change is not None and before is not None:
        detail += f"; the {rule.last_days} days before: {percent(before.rate)}, {change}"
    if transition == "fire":
        headline = f":warning: *Alert #{rule.id}*: {what} — now *{rate}*"
    elif transition == "remind":
        since = from_us(rule.state.fired_us or now_us, zone)
        headline = f":hourglass: *Still firing (#{rule.id})* since {since:%a %Y-%m-%d %H:%M %Z}: now *{rate}*"
    else:
        headline = f":white_check_mark: *Recovered (#{rule.id})*: now *{rate}*, at or above the threshold plus margin"
    blocks: list[Block] = [section(headline), context(detail)]
    if transition != "recover":
        value = f"{rule.id}:{rule.state.episode}"
        blocks.append(
            {
                "type": "actions",
                "block_id": f"alert-{rule.id}-{rule.state.episode}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": SNOOZE_ACTION,
                        "text": {"type": "plain_text", "text": f"Snooze {BUTTON_SNOOZE_HOURS}h"},
                        "value": value,
                    },
                    {
                        "type": "button",
                        "action_id": ACK_ACTION,
                        "text": {"type": "plain_text", "text": "Acknowledge"},
                        "style": "primary",
                        "value": value,
                    },
                ],
            }
        )
    text = f"{headline} ({detail})".replace("*", "")
    return OutboxMessage(
        key=message_key(rule, transition, now_us, zone),
        channel=rule.channel,
        text=text,
        blocks=blocks,
        thread_key=None if transition == "fire" else thread_key(rule),
    )

"""Digests and alerts from Slack: ``/acr subscribe|unsubscribe|subscriptions|alert|alerts ...`` (supervisors) and
the Snooze / Acknowledge buttons of alert messages.

Registered before the metric command listener (``register`` is called first in ``build_bolt_app``): its
listener only matches ``/acr`` texts that start with one of ``SCHEDULE_WORDS``; every other ``/acr`` goes on to
the metric questions. The words are parsed by ``bot.scheduler.words`` and run by ``ScheduleManager``, the same
code as ``acr-bot subscriptions`` and ``acr-bot alerts``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.presentation import Message, error_message, note_message
from bot.scheduler.alerts import ACK_ACTION, BUTTON_SNOOZE_HOURS, SNOOZE_ACTION
from bot.scheduler.manage import ScheduleManager
from bot.scheduler.times import SystemClock
from bot.scheduler.words import ALERT_USAGE, SUBSCRIBE_USAGE, Subscribe, is_schedule_command, parse_schedule_command
from bot.slack.answers import Answerer
from bot.slack.commands import acknowledge
from bot.slack.grammar import tokenize
from metrics.errors import UserError
from metrics.timeutil import US_PER_HOUR, from_us

log = logging.getLogger("acr_bot.slack")

SCHEDULE_HELP = {
    "subscribe #channel daily 09:00 [team:NAME] [weekdays] [tz:Europe/Berlin]": (
        "(supervisors) a daily digest in that channel; also unsubscribe #channel [team:NAME] and subscriptions"
    ),
    "alert tier1 below 75% [team:NAME] [7d] [last:7d] [min:30] [#channel] [strict]": (
        "(supervisors) an alert rule; also alerts, alert remove ID, alert snooze ID 2h"
    ),
}


def is_schedule_text(body: dict[str, Any]) -> bool:
    """Does this ``/acr`` text manage digests or alerts (and not ask a metric question)?"""
    try:
        return body.get("command") == "/acr" and is_schedule_command(tokenize(body.get("text") or ""))
    except UserError:
        return False


def on_change() -> None:
    """A subscription changed: reschedule the running server's digest jobs now (not at the next sync)."""
    from bot.scheduler.service import request_sync

    request_sync()


def register(app: App, answerer: Answerer) -> None:
    manager = ScheduleManager(answerer.store, answerer.settings.zone, SystemClock(), on_change)

    def manage(body: dict[str, Any], respond: Callable[..., Any], context: BoltContext) -> None:
        """Runs after the ack, in bolt's listener executor."""
        request_id = context.get("request_id") or uuid.uuid4().hex[:12]
        message = handle(manager, answerer, body.get("text") or "", body.get("user_id"), body.get("channel_id"))
        try:
            respond(text=message.text, blocks=message.blocks, response_type="ephemeral")
        except Exception:
            log.exception("request %s: could not post the reply to Slack", request_id)

    app.command("/acr", matchers=[is_schedule_text])(ack=acknowledge, lazy=[manage])

    def button(ack: Ack, body: dict[str, Any], respond: Callable[..., Any]) -> None:
        ack()
        note = press(manager, answerer, body)
        channel = (body.get("channel") or {}).get("id")
        thread_ts = (body.get("message") or {}).get("thread_ts") or (body.get("message") or {}).get("ts")
        try:
            if note.ok and channel and thread_ts:  # everyone in the thread sees who did what
                app.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=note.message.text)
            else:
                respond(text=note.message.text, response_type="ephemeral", replace_original=False)
        except Exception:
            log.exception("could not post the result of an alert button")

    app.action(SNOOZE_ACTION)(button)
    app.action(ACK_ACTION)(button)


def handle(manager: ScheduleManager, answerer: Answerer, text: str, user_id: str | None, here: str | None) -> Message:
    """The reply to ``/acr subscribe ...`` & co. Never raises."""
    try:
        if not _may_manage(answerer, user_id):
            words = "Sorry, only supervisors can manage digests and alerts."
            return note_message(words, words)
        command = parse_schedule_command(tokenize(text))
        message = manager.execute(command, user_id, here)
        if isinstance(command, Subscribe):
            hint = " (A private channel: invite the bot first, /invite @ACR Bot.)"
            return note_message(message.text + hint, message.plain + hint)
        return message
    except UserError as problem:
        usage = "" if "Usage:" in str(problem) else f" Usage: {SUBSCRIBE_USAGE}; {ALERT_USAGE}"
        return error_message(f"{problem}{usage}")
    except Exception:
        rid = uuid.uuid4().hex[:12]
        log.exception("request %s: /acr %r from %s failed", rid, text, user_id)
        words = f"Sorry, something went wrong on our side (request id {rid})."
        return note_message(words, words)


@dataclass(frozen=True, slots=True)
class Pressed:
    """What a button press did: the note to show, and whether it changed anything (then it goes in the thread)."""

    message: Message
    ok: bool


def press(manager: ScheduleManager, answerer: Answerer, body: dict[str, Any]) -> Pressed:
    """Snooze (for BUTTON_SNOOZE_HOURS) or acknowledge the alert episode named by the button's value."""
    user_id = (body.get("user") or {}).get("id")
    action = (body.get("actions") or [{}])[0]
    if not _may_manage(answerer, user_id):
        words = "Sorry, only supervisors can snooze or acknowledge alerts."
        return Pressed(note_message(words, words), ok=False)
    try:
        rule_text, _, episode_text = str(action.get("value", "")).partition(":")
        rule_id, episode = int(rule_text), int(episode_text)
    except ValueError:
        words = "This button is from an older message and no longer works."
        return Pressed(note_message(words, words), ok=False)
    try:
        if action.get("action_id") == SNOOZE_ACTION:
            manager.snooze(rule_id, BUTTON_SNOOZE_HOURS * US_PER_HOUR, user_id)
            rule = manager.store.schedules().alert_rule(rule_id)
            until = from_us(rule.snoozed_until_us or 0, manager.zone) if rule else None
            words = f"<@{user_id}> snoozed alert #{rule_id}" + (f" until {until:%a %H:%M %Z}." if until else ".")
        else:
            if not manager.store.schedules().acknowledge_alert(rule_id, episode, user_id or "someone"):
                words = f"Alert #{rule_id} is not firing any more (or was removed): nothing to acknowledge."
                return Pressed(note_message(words, words), ok=False)
            log.info("alert #%d episode %d acknowledged by %s", rule_id, episode, user_id)
            words = f"<@{user_id}> acknowledged alert #{rule_id}: no more reminders until it recovers."
    except UserError as problem:
        return Pressed(error_message(str(problem)), ok=False)
    return Pressed(note_message(words, words), ok=True)


def _may_manage(answerer: Answerer, user_id: str | None) -> bool:
    supervisors = answerer.supervisors
    return user_id is None or not supervisors.configured or supervisors.is_supervisor(user_id)

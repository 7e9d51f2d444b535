"""Digests and alerts from Slack: ``/acr subscribe|unsubscribe|subscriptions|alert|alerts ...`` (supervisors) and
the Snooze / Acknowledge buttons of alert messages.

The ``/acr`` router (``bot.slack.commands``) sends here the texts whose first word is one of ``schedules.words``.
The work is done by the ``bot.ports.Schedules`` given when the server is built (the scheduler's
``ScheduleManager``, the same code as ``acr-bot subscriptions`` and ``acr-bot alerts``); this module only checks
who may, and turns the outcome into a reply.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import App

from bot.ports import ALERT_ACTIONS, Pressed, Schedules
from bot.presentation import error_message, note_message
from bot.slack.answers import Answerer, Reply
from metrics.errors import UserError

log = logging.getLogger("acr_bot.slack")


def register(app: App, answerer: Answerer, schedules: Schedules) -> None:
    """The alert buttons (the ``/acr`` words come through the router in ``bot.slack.commands``)."""

    def button(body: dict[str, Any], respond: Callable[..., Any]) -> None:
        """Runs after the ack, in bolt's listener executor: a slow Slack never delays the ack of the press."""
        note = press(schedules, answerer, body)
        channel = (body.get("channel") or {}).get("id")
        thread_ts = (body.get("message") or {}).get("thread_ts") or (body.get("message") or {}).get("ts")
        try:
            if note.ok and channel and thread_ts:  # everyone in the thread sees who did what
                app.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=note.message.text)
            else:
                respond(text=note.message.text, response_type="ephemeral", replace_original=False)
        except Exception:
            log.exception("could not post the result of an alert button")

    from bot.slack.commands import acknowledge  # (commands imports this module)

    for action_id in ALERT_ACTIONS:
        app.action(action_id)(ack=acknowledge, lazy=[button])


def handle(schedules: Schedules, answerer: Answerer, words: list[str], user_id: str | None, here: str | None) -> Reply:
    """The reply to ``/acr subscribe ...`` & co., always only to the caller. Never raises."""
    try:
        if not answerer.supervisors.allows(user_id):
            text = "Sorry, only supervisors can manage digests and alerts."
            return Reply(note_message(text, text), ok=False)
        return Reply(schedules.run(words, user_id, here))
    except UserError as problem:
        return Reply(error_message(str(problem)), ok=False)
    except Exception:
        rid = uuid.uuid4().hex[:12]
        log.exception("request %s: /acr %r from %s failed", rid, " ".join(words), user_id)
        text = f"Sorry, something went wrong on our side (request id {rid})."
        return Reply(note_message(text, text), ok=False)


def press(schedules: Schedules, answerer: Answerer, body: dict[str, Any]) -> Pressed:
    """A Snooze or Acknowledge click, from a supervisor only."""
    user_id = (body.get("user") or {}).get("id")
    # A press always names its user; one without is forged (``allows(None)`` is the operator at the command line).
    if not user_id or not answerer.supervisors.allows(user_id):
        text = "Sorry, only supervisors can snooze or acknowledge alerts."
        return Pressed(note_message(text, text), ok=False)
    action = (body.get("actions") or [{}])[0]
    return schedules.press(str(action.get("action_id", "")), str(action.get("value", "")), user_id)

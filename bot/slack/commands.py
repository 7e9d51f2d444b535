"""``/acr`` and ``/tier1``: one listener that acks at once, routes by the first word in the background, and
replies through ``respond()``.

The first word picks the handler: a schedule word (``/acr subscribe ...``, see ``bot.slack.schedules``) goes to
the digests and alerts, everything else is a metric question for the ``Answerer``. One listener, so nothing
depends on the order in which listener groups are registered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk.errors import SlackClientError

from bot.ports import Schedules
from bot.slack import schedules as schedule_commands
from bot.slack.answers import Answerer, Reply
from bot.slack.grammar import COMMANDS, tokenize
from metrics.errors import UserError

log = logging.getLogger("acr_bot.slack")


def acknowledge(ack: Ack) -> None:
    """The ack, run on the request thread: nothing else happens before Slack gets its 200 (3-second limit)."""
    ack()


def register(app: App, answerer: Answerer, schedules: Schedules | None = None) -> None:
    def answer_command(body: dict[str, Any], respond: Callable[..., Any], context: BoltContext) -> None:
        """Runs after the ack, in bolt's listener executor (a lazy listener)."""
        request_id = context.get("request_id")
        send_reply(respond, route(answerer, schedules, body, request_id), request_id)

    for command in COMMANDS:
        app.command(command)(ack=acknowledge, lazy=[answer_command])


def route(answerer: Answerer, schedules: Schedules | None, body: dict[str, Any], request_id: str | None) -> Reply:
    """The reply to one slash command: schedule words to ``schedules``, the rest to the answerer. Never raises."""
    command, text, user_id = body.get("command", "/acr"), body.get("text") or "", body.get("user_id")
    if schedules is not None and command == "/acr":
        try:
            words = tokenize(text)
        except UserError:
            words = []  # the answerer explains what is wrong with the words
        if words and words[0].lower() in schedules.words:
            return schedule_commands.handle(schedules, answerer, words, user_id, body.get("channel_id"))
    return answerer.handle(command, text, user_id, request_id=request_id)


def send_reply(respond: Callable[..., Any], reply: Reply, request_id: str | None) -> None:
    """Post the reply: in the channel for ``share``, else only to the caller. A failure is logged, not raised."""
    try:
        respond(
            text=reply.message.text,
            blocks=reply.message.blocks,
            response_type="in_channel" if reply.in_channel else "ephemeral",
        )
    except (SlackClientError, OSError) as problem:  # Slack unreachable even after the retries
        log.error("request %s: could not post the reply to Slack: %s", request_id, problem)
    except Exception:
        log.exception("request %s: could not post the reply to Slack", request_id)

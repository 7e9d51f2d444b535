"""``/acr`` and ``/tier1``: ack at once, answer in the background, reply through ``respond()``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk.errors import SlackClientError

from bot.slack.answers import Answerer, Reply
from bot.slack.grammar import COMMANDS

log = logging.getLogger("acr_bot.slack")


def acknowledge(ack: Ack) -> None:
    """The ack, run on the request thread: nothing else happens before Slack gets its 200 (3-second limit)."""
    ack()


def register(app: App, answerer: Answerer) -> None:
    def answer_command(body: dict[str, Any], respond: Callable[..., Any], context: BoltContext) -> None:
        """Runs after the ack, in bolt's listener executor (a lazy listener)."""
        request_id = context.get("request_id")
        reply = answerer.handle(
            body.get("command", "/acr"), body.get("text") or "", body.get("user_id"), request_id=request_id
        )
        send_reply(respond, reply, request_id)

    for command in COMMANDS:
        app.command(command)(ack=acknowledge, lazy=[answer_command])


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

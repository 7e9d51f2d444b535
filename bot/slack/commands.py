"""``/acr`` and ``/tier1``: one listener that acks at once, routes by the first word in the background, and
replies through ``respond()``.

The first word picks the handler: a schedule word (``/acr subscribe ...``, see ``bot.slack.schedules``) goes to
the digests and alerts, everything else is a metric question for the ``Answerer``. One listener, so nothing
depends on the order in which listener groups are registered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.ports import Schedules
from bot.presentation import Message, context
from bot.slack import schedules as schedule_commands
from bot.slack.answers import Answerer, Reply, ReplyFile
from bot.slack.grammar import COMMANDS, tokenize
from metrics.errors import UserError

log = logging.getLogger("acr_bot.slack")


def acknowledge(ack: Ack) -> None:
    """The ack, run on the request thread: nothing else happens before Slack gets its 200 (3-second limit)."""
    ack()


def register(app: App, answerer: Answerer, schedules: Schedules | None = None) -> None:
    def answer_command(
        body: dict[str, Any], respond: Callable[..., Any], context: BoltContext, client: WebClient
    ) -> None:
        """Runs after the ack, in bolt's listener executor (a lazy listener)."""
        request_id = context.get("request_id")
        reply = route(answerer, schedules, body, request_id)
        user_id = body.get("user_id")
        if reply.files and user_id:
            send_with_files(client, respond, reply, body.get("channel_id"), user_id, request_id)
        else:
            send_reply(respond, reply, request_id)

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


def send_with_files(
    client: WebClient,
    respond: Callable[..., Any],
    reply: Reply,
    channel_id: str | None,
    user_id: str,
    request_id: str | None,
) -> None:
    """A reply with files (a chart, a CSV): shared, the reply is posted in the channel and the files in its
    thread; otherwise the reply stays private and the files come by direct message (a file cannot be ephemeral).
    If the channel refuses the bot (a private channel it is not in), the shared reply falls back to response_url
    and the files to a direct message. Failures are logged and told to the user, never raised."""
    try:
        if reply.in_channel and channel_id:
            try:
                posted = client.chat_postMessage(
                    channel=channel_id, text=reply.message.text, blocks=reply.message.blocks
                )
                _upload(client, reply.files, channel_id, str(posted["ts"]))
                return
            except SlackApiError as problem:
                log.warning("request %s: cannot post in %s (%s); replying by response_url", request_id, channel_id,
                            problem.response.get("error"))  # fmt: skip
        one = len(reply.files) == 1
        note = (
            f"{_names(reply.files)} {'is on its' if one else 'are on their'} way to your direct messages with the bot."
        )
        send_reply(respond, _with_note(reply, note), request_id)
        opened = client.conversations_open(users=user_id)
        _upload(client, reply.files, str(opened["channel"]["id"]), None)
    except (SlackClientError, OSError, KeyError) as problem:
        error = problem.response.get("error") if isinstance(problem, SlackApiError) else problem
        log.error("request %s: could not upload %s: %s", request_id, _names(reply.files), error)
        text = f"Sorry, the {_names(reply.files)} could not be uploaded to Slack ({error}). Please try again."
        try:
            respond(text=text, response_type="ephemeral", replace_original=False)
        except (SlackClientError, OSError) as again:
            log.error("request %s: could not tell the user either: %s", request_id, again)


def _upload(client: WebClient, files: tuple[ReplyFile, ...], channel: str, thread_ts: str | None) -> None:
    uploads = [{"content": f.render(), "filename": f.filename, "title": f.title} for f in files]
    client.files_upload_v2(file_uploads=uploads, channel=channel, thread_ts=thread_ts)


def _names(files: tuple[ReplyFile, ...]) -> str:
    kinds = ["chart" if f.filename.endswith(".png") else "CSV file" for f in files]
    return "The " + " and the ".join(kinds) if kinds else "The file"


def _with_note(reply: Reply, note: str) -> Reply:
    """The reply with one more line under it (``note`` is the bot's own text, no user input)."""
    message = reply.message
    blocks = [*message.blocks, context(note)]
    return replace(reply, message=Message(blocks=blocks, text=message.text, plain=f"{message.plain}\n{note}"))

"""Shared by ``acr-bot digest``, ``alerts`` and ``subscriptions``: the scheduler's parts for one command run, on the
command's store (closed when the command ends)."""

from __future__ import annotations

from bot.cli.common import command_store, settings
from bot.clock import Clock, SystemClock
from bot.scheduler.delivery import Poster
from bot.scheduler.jobs import Jobs
from bot.scheduler.manage import ScheduleManager
from bot.scheduler.words import parse_channel
from bot.settings import Settings
from metrics.errors import UserError


def command_jobs(clock: Clock) -> Jobs:
    """The digest and alert jobs as of ``clock``, posting with the same Web API client as the server."""
    from bot.slack.app import build_web_client

    config = settings()
    store = command_store()
    poster = Poster(build_web_client(config), store.outbox(), clock)
    return Jobs(config, store, poster, clock)


def command_schedules() -> ScheduleManager:
    """Subscriptions and alert rules, managed as from Slack."""
    return ScheduleManager(command_store(create=True), settings().zone, SystemClock())  # (before any import)


def cli_channel(text: str) -> str:
    """A channel on the command line: ``C0123ABCD``, ``#name`` or a bare ``name`` (a shell eats an unquoted #), as
    its id: what is stored, and what files_upload_v2 and conversations.history need. A name is looked up in Slack
    (conversations.list, which needs SLACK_BOT_TOKEN and the channels:read and groups:read scopes)."""
    word = text.strip()
    if word and word[0].isalnum() and not word.isupper():
        word = "#" + word
    channel = parse_channel(word)
    return _channel_id(channel[1:], settings()) if channel.startswith("#") else channel


_HOW_TO_FIND_AN_ID = "give the channel id instead (like C0123ABCD: in Slack, the channel's details, at the bottom)"


def _channel_id(name: str, config: Settings) -> str:
    if config.slack_bot_token is None:
        raise UserError(f"#{name}: a channel name can only be looked up with SLACK_BOT_TOKEN set; {_HOW_TO_FIND_AN_ID}")
    from slack_sdk.errors import SlackApiError, SlackClientError

    from bot.slack.app import build_web_client

    client = build_web_client(config)
    cursor: str | None = None
    while True:
        try:
            response = client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=1000, cursor=cursor
            )
        except SlackApiError as refused:
            raise UserError(
                f"cannot look up #{name} in Slack ({refused.response.get('error')}); {_HOW_TO_FIND_AN_ID}"
            ) from None
        except (SlackClientError, OSError) as problem:
            raise UserError(f"cannot reach Slack to look up #{name} ({problem}); {_HOW_TO_FIND_AN_ID}") from None
        for found in response.get("channels") or []:
            if found.get("name") == name.lower():
                return str(found["id"])
        cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        if cursor is None:
            raise UserError(
                f"no channel #{name} that the bot can see (a private one: /invite @ACR Bot first); {_HOW_TO_FIND_AN_ID}"
            )

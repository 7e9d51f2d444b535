"""Shared by ``acr-bot digest``, ``alerts`` and ``subscriptions``: the scheduler's parts for one command run, on the
command's store (closed when the command ends)."""

from __future__ import annotations

from bot.cli.common import command_store, settings
from bot.clock import Clock, SystemClock
from bot.scheduler.delivery import Poster
from bot.scheduler.jobs import Jobs
from bot.scheduler.manage import ScheduleManager
from bot.scheduler.words import parse_channel


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
    """A channel on the command line: ``C0123ABCD``, ``#name`` or a bare ``name`` (a shell eats an unquoted #)."""
    word = text.strip()
    if word and word[0].isalnum() and not word.isupper():
        word = "#" + word
    return parse_channel(word)

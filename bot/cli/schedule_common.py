"""Shared by ``acr-bot digest``, ``alerts`` and ``subscriptions``: the scheduler's parts for one command run."""

from __future__ import annotations

from bot.scheduler.delivery import Poster
from bot.scheduler.jobs import Jobs
from bot.scheduler.manage import ScheduleManager
from bot.scheduler.times import Clock, ManualClock, SystemClock
from bot.scheduler.words import parse_channel
from bot.settings import Settings
from bot.storage import ContactStore
from metrics.errors import UserError
from metrics.timeutil import parse_instant


def clock_for(config: Settings, as_of: str | None) -> Clock:
    """``--as-of`` (a timestamp; no offset = BOT_TIMEZONE) as a fixed clock, else the real one."""
    if as_of is None:
        return SystemClock()
    try:
        return ManualClock(parse_instant(as_of, config.zone))
    except ValueError as problem:
        raise UserError(f"--as-of: {problem}") from None


def jobs_for(config: Settings, store: ContactStore, clock: Clock) -> Jobs:
    from bot.slack.app import build_web_client

    poster = Poster(build_web_client(config), store.outbox(), clock)
    return Jobs(config, store, poster, clock)


def manager_for(config: Settings, store: ContactStore) -> ScheduleManager:
    return ScheduleManager(store, config.zone, SystemClock())


def cli_channel(text: str) -> str:
    """A channel on the command line: ``C0123ABCD``, ``#name`` or a bare ``name`` (a shell eats an unquoted #)."""
    word = text.strip()
    if word and word[0].isalnum() and not word.isupper():
        word = "#" + word
    return parse_channel(word)

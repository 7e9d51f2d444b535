"""Helpers shared by the commands: settings, the store, the clock (``--as-of``), logging."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bot.clock import Clock, ManualClock, SystemClock
from bot.settings import Settings, load_settings
from bot.storage import ContactStore, open_store
from metrics.errors import UserError
from metrics.timeutil import parse_instant

_SETTINGS = "acr_bot.settings"
F = TypeVar("F", bound=Callable[..., Any])


def settings() -> Settings:
    """The validated settings, read once per command run (a bad value raises UserError, shown as one
    ``Error:`` line)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return load_settings()
    if _SETTINGS not in ctx.meta:  # ``meta`` is shared by the whole command line's contexts
        ctx.meta[_SETTINGS] = load_settings()
    config: Settings = ctx.meta[_SETTINGS]
    return config


def command_store() -> ContactStore:
    """The store for the running command, closed when the command ends however it ends (sqlite-utils'
    ``ctx.call_on_close`` idiom, instead of a ``try/finally`` in every command)."""
    config = settings()
    store = open_store(
        config.database_url,
        synchronous=config.sqlite_synchronous,
        busy_timeout_ms=config.sqlite_busy_timeout_ms,
    )
    click.get_current_context().call_on_close(store.close)
    return store


class AsOf(click.ParamType):
    """``--as-of``: a timestamp (ISO 8601 or Unix seconds; no offset = BOT_TIMEZONE) as a clock fixed there."""

    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Clock:
        if isinstance(value, ManualClock):
            return value
        try:
            return ManualClock(parse_instant(value, settings().zone))
        except ValueError as problem:
            raise UserError(f"--as-of: {problem}") from None


def as_of_option(help: str) -> Callable[[F], F]:
    """The one ``--as-of`` of every command: the command gets ``clock``, the real clock unless --as-of is given."""

    def real_clock_unless_given(ctx: click.Context, param: click.Parameter, value: Clock | None) -> Clock:
        return SystemClock() if value is None else value

    return click.option("--as-of", "clock", type=AsOf(), default=None, callback=real_clock_unless_given, help=help)


def setup_logging(config: Settings) -> None:
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)

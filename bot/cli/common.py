"""Helpers shared by the commands: settings, the store, the clock (``--as-of``), logging."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
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


def command_store(*, create: bool = False, announce: Callable[[str], None] | None = None) -> ContactStore:
    """The store for the running command, closed when the command ends however it ends (sqlite-utils'
    ``ctx.call_on_close`` idiom, instead of a ``try/finally`` in every command).

    A SQLite file that does not exist yet is created only where ``create`` (ingest, demo, serve, and the commands
    that add subscriptions and alert rules), and that is said (on stderr, or through ``announce``); any other
    command refuses, naming the path it looked at, so a command run from another directory never answers from a
    new, empty database."""
    config = settings()
    if config.database_url.startswith("sqlite:") and not config.database_path.exists():
        if not create:
            raise UserError(
                f"no database at {database_label(config)} (DATABASE_URL {config.database_url}, read from "
                f"{_env_source()}). Run acr-bot from the directory that holds your .env and data/ (or set "
                "DATABASE_URL to an absolute path); to start one, load contacts with acr-bot ingest FILE or "
                "acr-bot demo"
            )
        news = f"Creating a new database at {database_label(config)}"
        announce(news) if announce else click.echo(news, err=True)  # (serve: a log line, JSON with LOG_FORMAT)
    store = open_store(
        config.database_url,
        synchronous=config.sqlite_synchronous,
        busy_timeout_ms=config.sqlite_busy_timeout_ms,
        sqlite_readers=config.sqlite_readers,
    )
    click.get_current_context().call_on_close(store.close)
    return store


def database_label(config: Settings) -> str:
    """The database as a user should see it in a summary: the SQLite file's absolute path (no password ever)."""
    if config.database_url.startswith("sqlite:"):
        return str(config.database_path.resolve())
    return postgres_label(config.database_url)


def postgres_label(url: str) -> str:
    """A PostgreSQL URL as words (``PostgreSQL database acr on /run/pg:5432``): no password, no URL escapes."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    where = str(params.get("host") or "localhost") + (f":{params['port']}" if params.get("port") else "")
    return f"PostgreSQL database {params.get('dbname') or params.get('user') or '(default)'} on {where}"


def _env_source() -> str:
    here = Path.cwd()
    if "DATABASE_URL" in os.environ:
        return "the environment"
    if (here / ".env").exists():
        return f"{here / '.env'}"
    return f"the default; there is no .env in {here}"


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
    """LOG_LEVEL and LOG_FORMAT (text, or json with the request id) for the whole process."""
    from bot.telemetry import setup_logging as setup

    setup(config.log_level, config.log_format)

"""``acr-bot ask "/acr agent:maria 7d"``: the Slack command's reply, printed as text (same parser and handler)."""

from __future__ import annotations

import sys

import click

from bot.cli.common import settings, setup_logging, store_for
from metrics.errors import UserError
from metrics.timeutil import parse_instant


@click.command("ask")
@click.argument("words", nargs=-1, required=True)
@click.option(
    "--user",
    "user_id",
    default=None,
    help="Answer as this Slack user (their permissions and `me`); without it you see everything.",
)
@click.option("--as-of", "as_of", default=None, help="The instant to answer as of [default: now].")
def ask(words: tuple[str, ...], user_id: str | None, as_of: str | None) -> None:
    """Ask like in Slack, e.g. acr-bot ask "/acr agent:maria 7d" (or "/tier1 team:billing by:agent")."""
    from bot.slack.answers import Answerer, Supervisors
    from bot.slack.app import build_web_client

    config = settings()
    setup_logging(config)
    as_of_us = None
    if as_of is not None:
        try:
            as_of_us = parse_instant(as_of, config.zone)
        except ValueError as problem:
            raise UserError(f"--as-of: {problem}") from None
    line = " ".join(words)
    command, _, text = line.strip().partition(" ")
    if not command.startswith("/"):
        command, text = "/acr", line
    store = store_for(config)
    try:
        client = build_web_client(config) if user_id else None
        answerer = Answerer(config, store, Supervisors.from_settings(config, client))
        reply = answerer.handle(command, text, user_id, as_of_us=as_of_us)
    finally:
        store.close()
    if reply.ok:
        click.echo(reply.message.plain)
    else:
        click.echo(reply.message.plain, err=True)
        sys.exit(1)

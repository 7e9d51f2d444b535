"""``acr-bot ask "/acr agent:maria 7d"``: the Slack command's reply, printed as text (same parser and handler)."""

from __future__ import annotations

import sys

import click

from bot.cli.common import as_of_option, command_store, settings, setup_logging
from bot.clock import Clock


@click.command("ask")
@click.argument("words", nargs=-1, required=True)
@click.option(
    "--user",
    "user_id",
    default=None,
    help="Answer as this Slack user (their permissions and `me`); without it you see everything.",
)
@as_of_option("The instant to answer as of [default: now].")
def ask(words: tuple[str, ...], user_id: str | None, clock: Clock) -> None:
    """Ask like in Slack, e.g. acr-bot ask "/acr agent:maria 7d" (or "/tier1 team:billing by:agent")."""
    from bot.slack.answers import Answerer, Supervisors
    from bot.slack.app import build_web_client

    config = settings()
    setup_logging(config)
    line = " ".join(words)
    command, _, text = line.strip().partition(" ")
    if not command.startswith("/"):
        command, text = "/acr", line
    client = build_web_client(config) if user_id else None
    answerer = Answerer(config, command_store(), Supervisors.from_settings(config, client), clock=clock)
    reply = answerer.handle(command, text, user_id)
    if reply.ok:
        click.echo(reply.message.plain)
    else:
        click.echo(reply.message.plain, err=True)
        sys.exit(1)

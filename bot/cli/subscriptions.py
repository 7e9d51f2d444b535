"""``acr-bot subscriptions add|remove|list``: daily digests of a scope posted to a Slack channel."""

from __future__ import annotations

import click

from bot.cli.schedule_common import cli_channel, command_schedules
from bot.scheduler.words import Subscribe, parse_schedule_command


@click.group("subscriptions")
def subscriptions() -> None:
    """Daily digests: which channel gets one, about what, and when (in BOT_TIMEZONE unless tz: is given)."""


@subscriptions.command("add")
@click.argument("channel")
@click.argument("words", nargs=-1, required=True)
def add(channel: str, words: tuple[str, ...]) -> None:
    """Digest to CHANNEL (id C0123ABCD or name) at a time, e.g.: add support-leads 09:00 team:billing weekdays
    tz:Europe/Berlin; add support-leads weekly mon 09:00; add support-leads monthly 1 09:00. A second add for the
    same channel, scope and cadence changes its time."""
    command = parse_schedule_command(["subscribe", *words])
    assert isinstance(command, Subscribe)
    message = command_schedules().subscribe(
        cli_channel(channel), command.scope, command.local_time, command.zone, command.weekdays_only, None,
        cadence=command.cadence, cadence_day=command.cadence_day,
    )  # fmt: skip
    click.echo(message.plain)


@subscriptions.command("remove")
@click.argument("subscription_id", type=int)
def remove(subscription_id: int) -> None:
    """Remove subscription SUBSCRIPTION_ID (the number shown by list)."""
    click.echo(command_schedules().remove_subscription(subscription_id).plain)


@subscriptions.command("list")
def list_subscriptions() -> None:
    """Every subscription: number, channel, days, time and zone, scope."""
    click.echo(command_schedules().list_subscriptions().plain)

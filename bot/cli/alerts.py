"""``acr-bot alerts``: evaluate the alert rules now; ``alerts add|list|remove|snooze`` manage them."""

from __future__ import annotations

import click

from bot.cli.common import as_of_option, settings, setup_logging
from bot.cli.schedule_common import cli_channel, command_jobs, command_schedules
from bot.clock import Clock
from bot.presentation import percent
from bot.scheduler.digest import rule_words
from bot.scheduler.words import AddAlert, parse_schedule_command, parse_snooze


@click.group("alerts", invoke_without_command=True)
@as_of_option("Evaluate as if it were this instant [default: now].")
@click.option("--dry-run", is_flag=True, help="Print what each rule would do; change and post nothing.")
@click.pass_context
def alerts(ctx: click.Context, clock: Clock, dry_run: bool) -> None:
    """Evaluate every alert rule now and post what fires, reminds or recovers (like the server's hourly job)."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(settings())
    results = command_jobs(clock).run_alerts(dry_run=dry_run)
    if not results:
        click.echo("No alert rules. Add one with: acr-bot alerts add CHANNEL tier1 below 75% team:NAME")
    for rule, evaluation in results:
        counts = evaluation.counts
        verb = f"would {evaluation.transition}" if dry_run else evaluation.transition
        if evaluation.transition == "none":
            verb = "quiet"
        click.echo(
            f"#{rule.id} {rule_words(rule)}: {percent(counts.rate)} ({counts.resolved}/{counts.matured} matured, "
            f"{counts.pending} pending) -> {verb}: {evaluation.reason}"
        )


@alerts.command("add")
@click.argument("channel")
@click.argument("words", nargs=-1, required=True)
def add(channel: str, words: tuple[str, ...]) -> None:
    """Alert to CHANNEL (id or name), e.g.: add support-leads tier1 below 75% team:billing 7d last:7d min:30
    strict."""
    command = parse_schedule_command(["alert", *words])
    assert isinstance(command, AddAlert)
    click.echo(command_schedules().add_alert(command, cli_channel(channel), None).plain)


@alerts.command("list")
def list_rules() -> None:
    """Every rule with its state (ok / firing, last rate, snoozed until)."""
    click.echo(command_schedules().list_alerts().plain)


@alerts.command("remove")
@click.argument("rule_id", type=int)
def remove(rule_id: int) -> None:
    """Remove rule RULE_ID."""
    click.echo(command_schedules().remove_alert(rule_id).plain)


@alerts.command("snooze")
@click.argument("rule_id", type=int)
@click.argument("duration")
def snooze(rule_id: int, duration: str) -> None:
    """Quiet rule RULE_ID for DURATION (30m, 2h, 1d; at most 30d): no firing or reminders until then."""
    duration_us = parse_snooze(duration)
    click.echo(command_schedules().snooze(rule_id, duration_us).plain)

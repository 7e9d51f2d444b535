"""``acr-bot digest``: run the daily digests that are due now (what the scheduler of ``acr-bot serve`` does)."""

from __future__ import annotations

from datetime import tzinfo

import click

from bot.cli.common import as_of_option, settings, setup_logging
from bot.cli.schedule_common import cli_channel, command_jobs
from bot.clock import Clock
from bot.scheduler.jobs import DueDigest, Jobs, schedule_of
from bot.storage.schedules import Subscription, scope_label
from metrics.timeutil import from_us


@click.command("digest")
@as_of_option("Run as if it were this instant [default: now].")
@click.option("--dry-run", is_flag=True, help="Print each subscription's latest digest instead of posting it.")
@click.option("--channel", default=None, help="Only the subscriptions of this Slack channel (id or #name).")
@click.option(
    "--team", default=None, help="With --dry-run and no subscription: preview this team's digest [default: all teams]."
)
def digest(clock: Clock, dry_run: bool, channel: str | None, team: str | None) -> None:
    """Post the digests due now (each at most once; a digest missed by more than DIGEST_GRACE_HOURS is skipped).
    With --dry-run and no subscriptions, print a preview of the digest as of now (--team for one team's)."""
    config = settings()
    setup_logging(config)
    jobs = command_jobs(clock)
    if not jobs.store.schedules().list_subscriptions():
        if dry_run:
            click.echo(_preview(jobs, clock.now_us(), config.zone, team))
            return
        click.echo("No digest subscriptions. Add one with: acr-bot subscriptions add CHANNEL 09:00 [team:NAME]")
        return
    run = jobs.run_digests(None if channel is None else cli_channel(channel), dry_run=dry_run)
    if not run.digests:
        click.echo("No digest is due.")
    for due, message in run.digests:
        sub = due.subscription
        when = from_us(due.due_us, schedule_of(sub, config.zone).zone)
        if dry_run:
            state = {
                "due": "would post now",
                "posted": "already posted",
                "missed": "preview (the server would skip it: more than DIGEST_GRACE_HOURS late)",
            }
            click.echo(f"--- {sub.channel} ({scope_label(sub.scope)}), due {when:%Y-%m-%d %H:%M %Z}: "
                       f"{state[due.status]}")  # fmt: skip
            if message is not None:
                click.echo(message.plain)
            continue
        entry = jobs.store.outbox().outbox_entry(due.key)
        status = entry.status if entry is not None else "not written"
        click.echo(f"{due.key}: {status}" + (f" (ts {entry.ts})" if entry is not None and entry.ts else ""))
    if not dry_run and run.delivery.retrying:
        click.echo(f"{len(run.delivery.retrying)} message(s) will be retried by the server's scheduler.")


def _preview(jobs: Jobs, now_us: int, zone: tzinfo, team: str | None) -> str:
    """The digest a subscription would post now (to no channel): what --dry-run shows before any subscription."""
    now = from_us(now_us, zone)
    scope = f"team:{team}" if team else ""
    preview = Subscription(0, "(preview)", scope, f"{now:%H:%M}", None, False, None, 0)
    due = DueDigest(preview, now.date(), now_us, "preview", "due")
    _, message = jobs.compose_digest(due, with_chart=False)
    return f"--- preview ({scope_label(scope)}), as of {now:%Y-%m-%d %H:%M %Z}; no subscription yet\n{message.plain}"

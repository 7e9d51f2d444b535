"""``acr-bot db copy --from URL --to URL``: move a store between SQLite and PostgreSQL (or between two of either)."""

from __future__ import annotations

import sys
from contextlib import ExitStack

import click

from bot.storage import open_store
from bot.storage.copy import copy_store
from bot.storage.urls import redact


@click.group("db")
def db() -> None:
    """The database itself: copy a whole store to another one."""


@db.command("copy")
@click.option("--from", "source_url", required=True, metavar="URL", help="The store to read (it is not changed).")
@click.option("--to", "target_url", required=True, metavar="URL", help="The store to fill; it must hold no contacts.")
@click.option("--no-progress", is_flag=True, help="No progress bar (it is shown only on a terminal anyway).")
def copy(source_url: str, target_url: str, no_progress: bool) -> None:
    """Copy every contact (with its version), subscription, alert rule, Slack link, outbox message and the agent
    roster from one store to another, e.g. --from sqlite:///data/acr.db --to postgresql://acr@db/acr. Stop the servers writing to the source
    first. The target is created and migrated if needed; its contacts are written in one transaction, so a
    copy that fails leaves none behind and can be run again. Every table is counted on both sides at the end."""
    show_progress = not no_progress and sys.stderr.isatty()
    with ExitStack() as stack:
        source = open_store(source_url)
        stack.callback(source.close)
        target = open_store(target_url)
        stack.callback(target.close)
        total = source.count_contacts()
        if show_progress:
            bar = stack.enter_context(
                click.progressbar(length=total, label="contacts", file=sys.stderr, show_eta=True, show_percent=True)
            )
            result = copy_store(source, target, progress=bar.update)
        else:
            result = copy_store(source, target)
    tables = ", ".join(f"{count} {table.replace('_', ' ')}" for table, count in result.tables.items())
    click.echo(f"Copied {result.contacts} contacts and {tables} from {redact(source_url)} to {redact(target_url)}.")

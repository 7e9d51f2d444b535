"""``acr-bot ingest PATH...``: bulk import of CSV, JSON and JSONL files (CONTRACT sections 1 and 3)."""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from datetime import tzinfo

import click

from bot.cli.common import command_store, database_label, settings
from bot.ingest import STDIN, EventMapper, FileResult, ingest_file
from bot.roster import Mapped, lookup
from bot.storage import ContactStore, UpsertCounts


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--no-progress", is_flag=True, help="No progress bar (it is shown only on a terminal anyway).")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["records", "amazon-connect"]),
    default="records",
    show_default=True,
    help="records: contact records, the type told by the extension. amazon-connect: Amazon Connect contact trace "
    "records as Firehose writes them to S3 (JSON objects back to back, gzip or not, any file name).",
)
def ingest(paths: tuple[str, ...], no_progress: bool, file_format: str) -> None:
    """Import contact records from .csv, .json (an array, or one object), .jsonl/.ndjson files, or - for JSONL on stdin.

    Each file is stored whole or not at all: if any record in it is invalid, every problem is listed as
    file:line: field: message, nothing from that file is stored, and the exit status is 1. Other files
    are imported independently. Re-importing a file changes nothing (its records count as unchanged);
    a record older (updated_at) than the stored version changes nothing either and counts as stale.
    With --format amazon-connect each CTR is mapped as the webhook maps it (README: Connect Amazon
    Connect); a CTR without a customer is skipped and counted as ignored.
    """
    config = settings()
    show_progress = not no_progress and sys.stdout.isatty() and sys.stderr.isatty()
    store = command_store(create=True)
    events = None
    if file_format == "amazon-connect":  # CTRs mapped as the webhook maps them, agent ids through the roster
        from bot.platforms.amazon_connect import CtrMapper  # (only here: ~0.2 s of imports)

        events = Mapped(CtrMapper(config), "amazon-connect", lookup(store.roster()))
    totals = UpsertCounts()
    total_ignored = 0
    failed = 0
    for name in paths:
        result = _import_one(store, name, config.zone, show_progress, events)
        if result.ok:
            counts = result.counts
            ignored = f", {result.ignored} ignored" if events is not None else ""
            click.echo(f"{result.name}: {_records(result.records)}: {_counts_text(counts)}{ignored}")
            totals.add(counts)
            total_ignored += result.ignored
        else:
            failed += 1
            for error in result.errors:
                click.echo(error, err=True)
            click.echo(
                f"{result.name}: {len(result.errors)} error{'s' if len(result.errors) != 1 else ''}"
                f" in {_records(result.records)}; nothing stored from this file",
                err=True,
            )
    files = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
    problem = f"; {failed} with errors, not stored" if failed else ""
    ignored = f", {total_ignored} ignored" if events is not None else ""
    click.echo(f"Total: {files}: {_counts_text(totals)}{ignored}{problem} (database {database_label(config)})")
    if failed:
        sys.exit(1)


def _counts_text(counts: UpsertCounts) -> str:
    return f"{counts.inserted} inserted, {counts.updated} updated, {counts.unchanged} unchanged, {counts.stale} stale"


def _import_one(
    store: ContactStore, name: str, zone: tzinfo, show_progress: bool, events: EventMapper | None
) -> FileResult:
    """One file, with a progress bar (bytes read) on stderr when asked."""
    stdin = sys.stdin.buffer if name == STDIN else None
    size = 0
    if show_progress and name != STDIN:
        try:
            size = os.path.getsize(name)
        except OSError:
            size = 0
    with ExitStack() as stack:
        if size:
            bar = stack.enter_context(
                click.progressbar(length=size, label=name, file=sys.stderr, show_eta=True, show_percent=True)
            )
            done = [0]

            def advance(bytes_read: int) -> None:
                bar.update(bytes_read - done[0])
                done[0] = bytes_read

            return ingest_file(store, name, zone, stdin=stdin, progress=advance, events=events)
        return ingest_file(store, name, zone, stdin=stdin, events=events)


def _records(count: int) -> str:
    return f"{count} record{'s' if count != 1 else ''}"

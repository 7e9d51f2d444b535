"""``acr-bot demo``: realistic generated contacts, into the database or to a file (see ``bot.demo``)."""

from __future__ import annotations

from pathlib import Path

import click

from bot.cli.common import as_of_option, command_store, database_label, settings
from bot.clock import Clock, SystemClock
from bot.demo import DEFAULT_CONTACTS, DEFAULT_DAYS, generate, load_into, make_agents_summary, write_file
from metrics.errors import UserError
from metrics.timeutil import US_PER_SECOND, iso_utc


@click.command("demo")
@click.option(
    "--contacts", "-n", type=click.IntRange(min=0), default=DEFAULT_CONTACTS, show_default=True,
    help="How many contacts to generate.",
)  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed (and --as-of) gives the same data.")
@click.option(
    "--days", type=click.IntRange(min=1, max=3650), default=DEFAULT_DAYS, show_default=True,
    help="Contacts start in the last DAYS days before --as-of.",
)  # fmt: skip
@as_of_option("The end of the generated period (a timestamp; default: now).")
@click.option("--if-empty", is_flag=True, help="Load only if the database has no contacts yet (used by make run).")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
    help="Write the records to this .jsonl, .ndjson, .json or .csv file instead of loading them.",
)  # fmt: skip
def demo(contacts: int, seed: int, days: int, clock: Clock, if_empty: bool, output: Path | None) -> None:
    """Generate realistic contacts: ~48 agents in five teams and three tiers, business hours in
    BOT_TIMEZONE, customers who come back (7-day ACR between 60% and 90%, varying by agent), transfers,
    escalations, outbound callbacks and abandoned contacts over several channels."""
    config = settings()
    as_of_us = clock.now_us()
    if isinstance(clock, SystemClock):  # "now" to the whole second, so the summary line stays readable
        as_of_us -= as_of_us % US_PER_SECOND
    period = f"{days} days up to {iso_utc(as_of_us)}"
    if output is not None:
        data = generate(contacts, seed=seed, as_of_us=as_of_us, days=days, zone=config.zone)
        try:
            write_file(data, output)
        except ValueError as problem:
            raise UserError(str(problem)) from None
        except OSError as problem:
            raise UserError(f"{output}: cannot write: {problem.strerror or problem}") from None
        click.echo(f"Wrote {len(data)} demo contacts ({period}) to {output}")
        return
    store = command_store(create=True)
    if if_empty and (existing := store.count_contacts()):
        click.echo(f"The database already has {existing} contacts; demo data not loaded.")
        return
    data = generate(contacts, seed=seed, as_of_us=as_of_us, days=days, zone=config.zone)
    counts = load_into(store, data, config.zone)
    click.echo(
        f"Loaded {len(data)} demo contacts ({make_agents_summary(data)}; {period}) into {database_label(config)}: "
        f"{counts.inserted} inserted, {counts.updated} updated, {counts.unchanged} unchanged, {counts.stale} stale"
    )

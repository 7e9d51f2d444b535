"""``acr-bot contacts``: stored contact records one customer at a time (CONTRACT section 3)."""

from __future__ import annotations

import click

from bot.cli.common import command_store, database_label, settings
from bot.storage import retention_of


@click.group("contacts")
def contacts() -> None:
    """Stored contacts: erase a customer's."""


@contacts.command("forget")
@click.option("--customer", "customer_id", required=True, help="The customer_id whose contacts are erased.")
def forget(customer_id: str) -> None:
    """Erase every contact of a customer (a data subject's request), with every derived value and rate
    corrected. Backups made before keep them: delete or re-make those too."""
    config = settings()
    erased = retention_of(command_store()).forget_customer(customer_id)
    noun = "contact" if erased == 1 else "contacts"
    click.echo(f"Erased {erased} {noun} of customer {customer_id!r} from {database_label(config)}")

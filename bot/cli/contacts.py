"""``acr-bot contacts``: stored contact records, one contact or one customer at a time (CONTRACT section 3)."""

from __future__ import annotations

from typing import Any

import click
import orjson

from bot.cli.common import command_store, database_label, settings
from bot.storage import retention_of
from metrics.errors import UserError
from metrics.records import KNOWN_FIELDS
from metrics.timeutil import iso_utc

_INSTANTS = {"started_at": "started_us", "ended_at": "ended_us", "updated_at": "updated_us"}
_BOOLEANS = ("escalated", "resolved")


@click.group("contacts")
def contacts() -> None:
    """Stored contacts: look at one, erase a customer's."""


@contacts.command("get")
@click.argument("source")
@click.argument("contact_id", metavar="ID")
def get(source: str, contact_id: str) -> None:
    """Print the stored contact SOURCE ID as JSON.

    The record's fields (instants in ISO 8601 UTC), when it was received, and the raw record or platform
    event as it was delivered. Exit status 1 when there is no such contact."""
    row = command_store().get_contact(source, contact_id)
    if row is None:
        raise UserError(f"no contact with source {source!r} and id {contact_id!r}")
    click.echo(orjson.dumps(stored_record(row), option=orjson.OPT_INDENT_2).decode())


def stored_record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored contact (``ContactStore.get_contact``) in the ingest schema's field names, with ``received_at``
    and the delivered ``raw`` record."""
    record: dict[str, Any] = {}
    for name in KNOWN_FIELDS:
        if name in _INSTANTS:
            us = row[_INSTANTS[name]]
            record[name] = None if us is None else iso_utc(us)
        elif name in _BOOLEANS:
            record[name] = None if row[name] is None else bool(row[name])
        else:
            record[name] = row[name]
    record["received_at"] = row["received_at"]
    record["raw"] = orjson.loads(row["raw"])
    return record


@contacts.command("forget")
@click.option("--customer", "customer_id", required=True, help="The customer_id whose contacts are erased.")
def forget(customer_id: str) -> None:
    """Erase every contact of a customer (a data subject's request), with every derived value and rate
    corrected. Backups made before keep them: delete or re-make those too."""
    config = settings()
    erased = retention_of(command_store()).forget_customer(customer_id)
    noun = "contact" if erased == 1 else "contacts"
    click.echo(f"Erased {erased} {noun} of customer {customer_id!r} from {database_label(config)}")

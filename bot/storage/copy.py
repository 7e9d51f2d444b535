"""``acr-bot db copy``: a whole store into an empty one, across backends (SQLite <-> PostgreSQL), streamed.

Two transactions on the target, each atomic: first the small tables (links, subscriptions, alert rules with their
state, the outbox with its history, so nothing already posted is posted again, the agent roster with its platform
ids), replacing whatever they held; then every contact with its version (``updated_us``), streamed in chunks through
the target's bulk writer (which works out the derived data itself). A copy that fails leaves no contact behind and
can simply be run again. At the end every table is counted on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bot.storage import COPIED_TABLES, ContactStore, write_chunks
from metrics.errors import UserError


@dataclass
class CopyResult:
    contacts: int = 0
    tables: dict[str, int] = field(default_factory=dict)


def copy_store(source: ContactStore, target: ContactStore, progress: Callable[[int], None] | None = None) -> CopyResult:
    """Copy ``source`` into ``target`` (which must hold no contact); ``progress`` gets each chunk's size."""
    already = target.count_contacts()
    if already:
        raise UserError(f"the target already holds {already} contacts; db copy fills an empty store (nothing changed)")
    expected = source.count_contacts()
    result = CopyResult()
    tables = [(table, *source.export_table(table)) for table in COPIED_TABLES]
    target.replace_tables(tables)
    with target.bulk(expected) as writer:
        for chunk in write_chunks(source.export_contacts()):
            writer.add(chunk)
            result.contacts += len(chunk)
            if progress is not None:
                progress(len(chunk))
    stored = target.count_contacts()
    if not (expected == result.contacts == stored):
        raise UserError(
            f"counts differ: the source held {expected} contacts at the start, {result.contacts} were read and the "
            f"target holds {stored}; was something writing to the source? Stop it and copy again into an empty store"
        )
    for table, _, rows in tables:
        copied = len(target.export_table(table)[1])
        if copied != len(rows):
            raise UserError(f"counts differ: {table}: {len(rows)} rows in the source, {copied} in the target")
        result.tables[table] = copied
    return result

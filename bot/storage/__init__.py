"""The contact store: the one place that knows how contacts are kept.

Callers use the ``ContactStore`` interface and ``open_store``; all SQL lives in the backend modules
beside this file, so a PostgreSQL store can be added without touching them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from metrics.records import Contact


@dataclass
class UpsertCounts:
    """What a write did with the records it was given."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def accepted(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


class BulkWriter(Protocol):
    """Receives a large batch in chunks, inside one transaction; see ``ContactStore.bulk``."""

    counts: UpsertCounts

    def add(self, contacts: Sequence[Contact]) -> None: ...


class ContactStore(Protocol):
    """Storage of contacts and of the derived data the metrics need."""

    def upsert(self, contacts: Iterable[Contact]) -> UpsertCounts:
        """Store a batch atomically: all of it, or (on an exception) none of it."""
        ...

    def bulk(self) -> AbstractContextManager[BulkWriter]:
        """A transaction for a batch too large for memory: committed on a clean exit, else rolled back."""
        ...

    def count_contacts(self) -> int: ...

    def get_contact(self, source: str, contact_id: str) -> dict[str, Any] | None:
        """One stored contact with its derived columns, or None."""
        ...

    def iter_contacts(self) -> Iterator[dict[str, Any]]:
        """Every stored contact with its derived columns, ordered by (source, id), streamed."""
        ...

    def close(self) -> None: ...


def open_store(database_url: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000) -> ContactStore:
    """Open (creating and migrating if needed) the store named by ``database_url``."""
    from bot.storage.sqlite import SQLiteContactStore

    path = database_url.removeprefix("sqlite:///")
    return SQLiteContactStore(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)

"""The contact store: the one place that knows how contacts are kept.

Callers use the ``ContactStore`` interface and ``open_store``; all SQL lives in the backend modules
beside this file, so a PostgreSQL store can be added without touching them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Protocol

from bot.storage.schedules import Outbox, ScheduleStore
from metrics.engine import MetricReader
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


@dataclass(frozen=True)
class AgentLink:
    """A Slack user known to be an agent: that user may always ask about that agent's numbers."""

    slack_user_id: str
    agent: str
    linked_by: str | None
    linked_at: str


class BulkWriter(Protocol):
    """Receives a large batch in chunks, inside one transaction; see ``ContactStore.bulk``."""

    counts: UpsertCounts

    def add(self, contacts: Sequence[Contact]) -> None: ...

    def add_flat(self, values: list[Any]) -> None:
        """Like ``add``, for rows given as one list of their values one after another, in Contact field order
        (how the import's reader process sends them: unpacking one flat list is far cheaper than many tuples)."""
        ...

    def expect(self, more_rows: int) -> None:
        """A hint that about ``more_rows`` more rows follow, so a large load can be written the fast way."""
        ...


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

    def dimension_values(self, dimension: str) -> list[str]:
        """Distinct stored values of agent, team, queue or channel (for "did you mean" suggestions)."""
        ...

    def link_agent(self, slack_user_id: str, agent: str, linked_by: str | None = None) -> None:
        """Link a Slack user to an agent name, replacing any earlier link of that user."""
        ...

    def unlink_agent(self, slack_user_id: str) -> bool:
        """Remove a user's link; False when there was none."""
        ...

    def agent_for_user(self, slack_user_id: str) -> str | None: ...

    def list_agent_links(self) -> list[AgentLink]: ...

    def metric_reader(self, zone: tzinfo) -> AbstractContextManager[MetricReader]:
        """One consistent read snapshot for one metric question (see ``metrics.engine.MetricSource``)."""
        ...

    def refresh_rollups(self, zone: tzinfo, max_days: int | None = None) -> int:
        """Rebuild stale metric rollups for ``zone`` (all, or the ``max_days`` most recent stale days)."""
        ...

    def stale_rollup_days(self, zone: tzinfo) -> int:
        """Days the metric rollups still have to rebuild for ``zone`` (-1: not built for this zone)."""
        ...

    def schedules(self) -> ScheduleStore:
        """Digest subscriptions and alert rules (``bot.storage.schedules``)."""
        ...

    def outbox(self) -> Outbox:
        """The outbox of scheduled Slack messages (``bot.storage.schedules``)."""
        ...

    def close(self) -> None: ...


def open_store(database_url: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000) -> ContactStore:
    """Open (creating and migrating if needed) the store named by ``database_url``."""
    from bot.storage.sqlite import SQLiteContactStore

    path = database_url.removeprefix("sqlite:///")
    return SQLiteContactStore(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)

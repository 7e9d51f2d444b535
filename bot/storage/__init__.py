"""The contact store port: the one interface through which the bot keeps contacts and what it derives from them.

Callers depend on ``ContactStore`` (with ``BulkWriter``, ``metrics.engine.MetricReader`` and the scheduler's
``ScheduleStore`` and ``Outbox`` in ``bot.storage.schedules``) and get a store from ``open_store(url)``; every SQL
statement lives in the backend modules beside this file. A backend promises what each method's docstring says;
what a method may raise is named there (besides the backend's own errors when the database itself fails, such
as ``sqlite3.OperationalError`` for a locked or unreadable file).

Adding a backend: implement ``ContactStore`` in ``bot/storage/<name>.py`` and add one line to ``BACKENDS``; then
one line in ``tests/store_support.py`` (``STORE_BACKENDS``, and a probe in ``PROBES``) runs every store-facing
test on it too (the ``store`` fixture; a server-based backend reads ``TEST_DATABASE_URL``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import tzinfo
from itertools import islice
from typing import Any, Protocol, overload, runtime_checkable

from bot.roster import RosterEntry
from bot.storage.schedules import Outbox, SchedulerLease, ScheduleStore
from metrics.engine import MetricReader
from metrics.errors import UserError
from metrics.records import Contact
from metrics.why import WhyQuery, WhyRow
from metrics.windows import QuickReturns

# The tables besides the contacts that ``db copy`` moves, with the columns every backend has (in this order).
COPIED_TABLES: dict[str, tuple[str, ...]] = {
    "slack_links": ("slack_user_id", "agent", "linked_by", "linked_at"),
    "subscriptions": (
        "id", "channel", "scope", "local_time", "zone", "weekdays_only", "created_by", "created_us", "cadence",
        "cadence_day",
    ),
    "alert_rules": (
        "id", "metric", "threshold", "window_us", "last_days", "scope", "min_matured", "channel", "strict",
        "created_by", "created_us", "snoozed_until_us", "firing", "episode", "fired_us", "notified_us",
        "acknowledged_by", "last_rate", "last_matured", "evaluated_us",
    ),
    "outbox": (
        "key", "channel", "text", "blocks", "thread_key", "file", "filename", "title", "status", "attempts",
        "next_attempt_us", "created_us", "ts", "sent_us", "last_error",
    ),
    "agent_roster": ("agent", "team", "tier", "slack_user"),
    "agent_platform_ids": ("platform", "platform_id", "agent"),  # after agent_roster: its rows name roster agents
}  # fmt: skip
BOOLEAN_COLUMNS = frozenset({"weekdays_only", "strict", "firing"})  # 0/1 in SQLite
TableRows = tuple[str, tuple[str, ...], list[tuple[Any, ...]]]  # (table, columns, rows)


@dataclass
class UpsertCounts:
    """What a write did with the records it was given."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0  # older (``updated_at``) than the stored version: valid, kept out

    @property
    def accepted(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.stale

    def add(self, other: UpsertCounts) -> None:
        """Add ``other``'s counts to these."""
        for name in _COUNT_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def minus(self, other: UpsertCounts) -> UpsertCounts:
        """These counts less ``other``'s (what happened between two readings of a running write)."""
        return UpsertCounts(*(getattr(self, name) - getattr(other, name) for name in _COUNT_NAMES))

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "stale": self.stale,
        }


@dataclass(frozen=True)
class AgentLink:
    """A Slack user known to be an agent: that user may always ask about that agent's numbers."""

    slack_user_id: str
    agent: str
    linked_by: str | None
    linked_at: str


_WIDTH = len(Contact._fields)
WRITE_CHUNK = 5000  # records handed to a bulk writer at once by ``add_all``


class PackedContacts(Sequence[Contact]):
    """Contacts given as one flat list of their values, row after row, in Contact field order.

    How the import's reader processes hand over what they read: one pickled list is far cheaper to send and
    unpack than many tuples. To a caller it is a sequence of Contacts; a backend may write ``values`` as they
    are (SQLite does). With ``packer`` (what the store's ``RawPacking.raw_packer`` gave) each raw is as that
    packer stores it, not text: only the store that made the packer takes such a chunk. Raises ValueError
    when the values are not whole rows.
    """

    __slots__ = ("packer", "values")

    def __init__(self, values: list[Any], packer: RawPacker | None = None):
        if len(values) % _WIDTH:
            raise ValueError(f"{len(values)} values are not whole rows of {_WIDTH}")
        self.values = values
        self.packer = packer

    def __len__(self) -> int:
        return len(self.values) // _WIDTH

    @overload
    def __getitem__(self, index: int) -> Contact: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Contact]: ...

    def __getitem__(self, index: int | slice) -> Contact | Sequence[Contact]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return Contact._make(self.values[index * _WIDTH : (index + 1) * _WIDTH])


class RawPacker(Protocol):
    """Turns raw records into what one store keeps (compressed), where the import reads them (``RawPacking``)."""

    def pack(self, raw: bytes) -> str | bytes:
        """``raw`` (a record's UTF-8 text, as bytes) as the store keeps it."""
        ...

    def pack_all(self, raws: list[bytes]) -> list[str | bytes]:
        """``pack`` of each of ``raws``, in one call (cheaper a raw than one call each)."""
        ...


@runtime_checkable
class RawPacking(Protocol):
    """A store that lets an import's reader processes put raws in the form it keeps them (SQLite compresses
    them), so its one writer does not: about a tenth of the writer's time a contact on 2.5 KB Connect CTRs."""

    def raw_packer(self, samples: Sequence[tuple[str, str]]) -> RawPacker | None:
        """A packer for one import (it may be handed to child processes), or None (give raws as text).
        ``samples``: (raw, customer_id) of the import's first records, for a store that learns from them.
        Chunks packed by it go to ``BulkWriter.add`` as ``PackedContacts(values, packer)``."""
        ...


class BulkWriter(Protocol):
    """Receives one large batch in chunks, inside the one transaction of ``ContactStore.bulk``."""

    counts: UpsertCounts
    """What the chunks added so far did (as ``ContactStore.upsert`` counts them); final once the block ends."""

    def add(self, contacts: Sequence[Contact]) -> None:
        """Write a chunk, in order, after the chunks before it (the same upsert rules as ``upsert``).

        Each item is a Contact, or a plain tuple of a Contact's fields in order (``PackedContacts`` too).
        Nothing is visible to readers before the transaction commits.
        """
        ...


def add_all(writer: BulkWriter, contacts: Iterable[Contact]) -> None:
    """Hand ``contacts`` to ``writer``: ``PackedContacts`` whole (their raws may be packed as the store keeps them:
    never taken apart into Contacts), others ``WRITE_CHUNK`` at a time."""
    if isinstance(contacts, PackedContacts):
        writer.add(contacts)
        return
    for chunk in write_chunks(contacts):
        writer.add(chunk)


def counted_add(writer: BulkWriter, contacts: Iterable[Contact]) -> UpsertCounts:
    """``add_all``, returning what these contacts did (the writer's counts after, less those before)."""
    before = writer.counts.minus(UpsertCounts())
    add_all(writer, contacts)
    return writer.counts.minus(before)


def write_chunks(contacts: Iterable[Contact]) -> Iterator[list[Contact]]:
    """``contacts`` in lists of ``WRITE_CHUNK``, read as they are handed on (a stream never held whole)."""
    iterator = iter(contacts)
    while chunk := list(islice(iterator, WRITE_CHUNK)):
        yield chunk


_COUNT_NAMES = ("inserted", "updated", "unchanged", "stale")


@runtime_checkable
class PacksImportRows(Protocol):
    """A store that takes an import's rows in a form of its own, made by the import's reader processes (the side
    with cores to spare) instead of its writer. A store without it gets ``PackedContacts``."""

    def row_packer(self) -> Callable[[Sequence[Sequence[Any]]], Sequence[Contact]] | None:
        """A function, called in a reader process (forked: it need not pickle), from a list of rows (tuples in
        Contact field order) to the Sequence[Contact] that this store's ``BulkWriter.add`` writes fastest; it
        must pickle cheaply (it is sent to the writer). One packer per write. None: ``PackedContacts`` after all."""
        ...


class ContactStore(Protocol):
    """Contacts, the data derived from them for the metrics, Slack links and the scheduler's records.

    Thread-safe: one store serves every thread of a process; writes are serialised by the store, and reads
    never wait for a write. Several processes may open the same database.

    Writes (``upsert`` and ``bulk``) apply the records in the order given, each against the stored version of
    its ``(source, id)`` (an earlier record of the same batch included), and count it as exactly one of:
    inserted (new key); unchanged (``raw`` identical to the stored one: nothing is written); stale (both have
    ``updated_us`` and the record's is older: nothing is written); updated (anything else: the record replaces
    the stored one whole, ``updated_us`` included, even one without ``updated_us``).
    """

    def upsert(self, contacts: Iterable[Contact]) -> UpsertCounts:
        """Store a batch atomically: all of it, or (when anything raises) none of it.

        A contact whose ``(source, id)`` is stored replaces it (counted ``updated``), or is counted
        ``unchanged`` when its raw record is identical, or ``stale`` when its ``updated_us`` is older than the
        stored one's (see the class docstring); a key repeated in one batch is applied in order.
        ``PackedContacts`` are written whole (``add_all``). A backend may run the transaction again when the
        database aborted it for a reason that passes (PostgreSQL: a deadlock or a serialization failure).
        Every derived value (next repeats, rollup marks) is correct when the transaction commits.
        """
        ...

    def bulk(self, expected_rows: int = 0) -> AbstractContextManager[BulkWriter]:
        """A transaction for a batch too large for memory: committed on a clean exit, else rolled back.

        ``expected_rows`` (0: unknown) says about how many records the caller will add: a backend may load a
        large batch a faster way (it never changes the result). Readers see the stored data as it was before
        the block until it commits.
        """
        ...

    def count_contacts(self) -> int:
        """How many contacts are stored (constant time)."""
        ...

    def get_contact(self, source: str, contact_id: str) -> dict[str, Any] | None:
        """One stored contact, or None: the Contact fields (instants in µs since the epoch, UTC; ``raw`` the
        record as delivered, JSON text), ``received_at`` (ISO 8601 UTC text) and the derived
        ``next_repeat_us`` (None when the metrics do not count the contact, or it has no later repeat)."""
        ...

    def data_since_us(self) -> int | None:
        """The start (µs UTC) of the earliest stored candidate contact, None when there is none: tells whether a
        period lies before the data starts (then comparing with it would mislead)."""
        ...

    def quick_returns(self, spec: QuickReturns) -> list[int]:
        """For window sensitivity under a day (``metrics.windows``): per bound, the cohort's candidates whose
        first repeat came after it but within a day of their end; read from those few contacts alone."""
        ...

    def dimension_values(self, dimension: str) -> list[str]:
        """Distinct non-empty stored values of ``agent``, ``team``, ``queue``, ``channel`` or ``reason``, sorted (for "did
        you mean" suggestions). Raises ValueError for any other dimension."""
        ...

    def link_agent(self, slack_user_id: str, agent: str, linked_by: str | None = None) -> None:
        """Link a Slack user to an agent name, replacing any earlier link of that user."""
        ...

    def unlink_agent(self, slack_user_id: str) -> bool:
        """Remove a user's link; False when there was none."""
        ...

    def agent_for_user(self, slack_user_id: str) -> str | None:
        """The agent linked to this Slack user, or None."""
        ...

    def list_agent_links(self) -> list[AgentLink]:
        """Every link, by agent then user."""
        ...

    def replace_roster(self, entries: Sequence[RosterEntry]) -> int:
        """Make ``entries`` the agent roster, atomically; link each entry's Slack user to its agent; and re-map the
        stored contacts whose agent is still one of the roster's platform ids ``(source, agent)``: agent := the
        roster's name, team filled when empty, tier := the roster's tier when it has one (derived data kept
        correct). Contacts already carrying a name are left as they are. Returns how many were re-mapped."""
        ...

    def roster(self) -> list[RosterEntry]:
        """The agent roster, by agent name."""
        ...

    def unknown_agents(self, sources: Sequence[str]) -> list[tuple[str, str, int]]:
        """``(source, agent, contacts)`` for the contacts of ``sources`` whose agent is not a roster agent."""
        ...

    def metric_reader(self, zone: tzinfo, *, refresh_days: int = ...) -> AbstractContextManager[MetricReader]:
        """One consistent read snapshot for one metric question, with calendar days in ``zone`` (see
        ``metrics.engine.MetricSource``). First rebuilds up to ``refresh_days`` stale rollup days (default: a
        few; 0: none, as tests do to see stale rollups), but never waits for a write in progress to do so."""
        ...

    def why_rows(self, query: WhyQuery) -> Iterator[WhyRow]:
        """The contacts behind a number (``metrics.why``): every matured candidate of ``query`` that is not
        resolved, with its causes and first repeat, in order of ``started_us`` then ``(source, id)``; streamed from
        one read snapshot (a team's month is tens of thousands of rows: never all in memory)."""
        ...

    def escalation_counts(self, query: WhyQuery) -> tuple[int, int]:
        """``(candidates, escalated)``: the candidates of ``query``'s scope and period (every tier, matured or not:
        an escalation is known when the contact ends) and how many of them were escalated (the agent scorecard)."""
        ...

    def refresh_rollups(self, zone: tzinfo, max_days: int | None = None) -> int:
        """Rebuild stale metric rollups for ``zone`` (all, or the ``max_days`` most recent stale UTC days);
        returns how many UTC days were rebuilt. Rollups only make answers faster, never different."""
        ...

    def scheduler_lease(self) -> SchedulerLease:
        """A fresh lease object: held by at most one process per database (``bot.scheduler.leader``)."""
        ...

    def schedules(self) -> ScheduleStore:
        """Digest subscriptions and alert rules (``bot.storage.schedules``)."""
        ...

    def outbox(self) -> Outbox:
        """The outbox of scheduled Slack messages (``bot.storage.schedules``)."""
        ...

    def export_contacts(self) -> Iterator[Contact]:
        """Every stored contact as it was written, streamed (memory stays flat), in the order they were first
        stored (for ``db copy``)."""
        ...

    def export_table(self, table: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """The columns (``COPIED_TABLES[table]``) and every row of one of the small tables, in insertion order
        (for ``db copy``)."""
        ...

    def replace_tables(self, tables: Sequence[TableRows]) -> None:
        """Replace the rows of these ``COPIED_TABLES`` with the given ones, in one transaction (``db copy``)."""
        ...

    def close(self) -> None:
        """Release the store's connections; the store is not used afterwards (closing it again does nothing)."""
        ...


def _open_sqlite(url: str, synchronous: str, busy_timeout_ms: int, readers: int) -> ContactStore:
    from bot.storage.sqlite import SQLiteContactStore

    return SQLiteContactStore(
        url.removeprefix("sqlite:///"), synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, readers=readers
    )


# (url, SQLite synchronous, busy timeout in ms, SQLite reader connections) -> a store
Opener = Callable[[str, str, int, int], ContactStore]


# The backends by URL prefix: adding one is one line here (its module is imported only when it is used).
def _open_postgres(url: str, synchronous: str, busy_timeout_ms: int, readers: int) -> ContactStore:
    from bot.storage.postgres import PostgresContactStore

    return PostgresContactStore(url)


BACKENDS: dict[str, Opener] = {
    "sqlite:///": _open_sqlite,
    "postgresql://": _open_postgres,  # any URL libpq accepts, a Unix socket too (?host=/run/postgresql)
    "postgres://": _open_postgres,
}


def check_database_url(database_url: str) -> str:
    """``database_url`` when a backend serves it, else ValueError naming its scheme (the settings ask this)."""
    if database_url.startswith(tuple(BACKENDS)):
        return database_url
    from bot.storage.urls import redact

    scheme = redact(database_url.split(":", 1)[0] or database_url)
    raise ValueError(
        f"{scheme!r} is not a supported database; use sqlite:///path/to/acr.db or "
        "postgresql://user:password@host:port/dbname"
    )


def open_store(
    database_url: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000, sqlite_readers: int = 4
) -> ContactStore:
    """Open (creating and migrating if needed) the store named by ``database_url``; the backend is chosen by
    the URL's scheme (``BACKENDS``). ``synchronous``, ``busy_timeout_ms`` and ``sqlite_readers`` (reader
    connections at most) tune SQLite; other backends may ignore them. Raises ValueError for a URL no backend
    serves."""
    check_database_url(database_url)
    prefix = next(prefix for prefix in BACKENDS if database_url.startswith(prefix))
    return BACKENDS[prefix](database_url, synchronous, busy_timeout_ms, sqlite_readers)


@runtime_checkable
class Retention(Protocol):
    """Deleting contacts for good (RETENTION_DAYS, a data subject's erasure), with every derived value of what
    remains exact, while writers go on. The SQLite and PostgreSQL stores have it; a backend without it says so
    when asked (``retention_of``)."""

    def purge_contacts_before(self, cutoff_us: int) -> int:
        """Delete every contact that started before ``cutoff_us``; returns how many. May commit in several
        transactions (so writers are not held up for long); a contact is deleted whole or not at all."""
        ...

    def forget_customer(self, customer_id: str) -> int:
        """Erase every contact of ``customer_id``; returns how many. May commit in several transactions; run it
        again if it was interrupted."""
        ...


def retention_of(store: ContactStore) -> Retention:
    """``store`` as a Retention, or a UserError saying that its backend cannot delete contacts yet."""
    if not isinstance(store, Retention):
        raise UserError(f"the {type(store).__name__} cannot delete contacts yet (RETENTION_DAYS, contacts forget)")
    return store

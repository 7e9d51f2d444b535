"""Group commit for concurrent webhook batches: one store transaction for the batches that arrive together.

Every write transaction pays a fixed cost (the lock, the derived-data refresh, the commit and its WAL checkpoints)
that dwarfs a one-record batch. Requests that arrive while a write is in progress queue up; the next writer takes
the whole queue into ONE transaction, adding each request's records in turn so that each gets its own counts
(exactly what sequential writes would report). Atomicity per request is kept: a transaction holds whole requests
only, and if a group's transaction fails, each of its requests is retried alone (by the store's ``upsert``, with
its own retries) so that one bad batch cannot fail its neighbours. A request is answered only after the
transaction that holds it has committed.

Requests that queue while a group is being written join it before its commit (as long as they fit), rather than
wait for the next transaction: under a steady stream of Firehose deliveries (decoded in other processes) groups
were mostly of ONE request, and a transaction's fixed cost (its commit writes every index page it touched to the
WAL, and random keys touch most leaves) was about a third of its write.

A store whose writer can (``AddsParts``: PostgreSQL) takes consecutive requests of a group, up to WRITE_CHUNK
records, in one call that still counts each request as written in turn: one COPY and one INSERT for them, where
each request on its own costs a round trip or three.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.storage import WRITE_CHUNK, BulkWriter, ContactStore, UpsertCounts, counted_add
from bot.storage.errors import StoreUnavailable
from metrics.records import Contact


@runtime_checkable
class AddsParts(Protocol):
    """A bulk writer that writes several chunks in one go, each counted as if added in turn after the ones before
    it (``_PostgresBulkWriter.add_parts``)."""

    def add_parts(self, parts: Sequence[Sequence[Contact]]) -> list[UpsertCounts]: ...


@dataclass(eq=False)
class _Pending:
    contacts: Sequence[Contact]
    counts: UpsertCounts | None = None
    error: Exception | None = None

    @property
    def done(self) -> bool:
        return self.counts is not None or self.error is not None


class WriteCoalescer:
    """``upsert`` like the store's, but concurrent callers share transactions (group commit)."""

    # Half of what PostgreSQL takes for an import (WINDOW_PASS_MIN_ROWS, 20,000: whole customer histories worked
    # out under its derive lock, which every other server's writes then wait for): a full group stays a batch.
    def __init__(self, store: ContactStore, max_group_contacts: int = 10_000):
        self.store = store
        self.max_group_contacts = max_group_contacts
        self._queue: deque[_Pending] = deque()
        self._queue_lock = threading.Lock()
        self._writer_lock = threading.Lock()

    def upsert(self, contacts: Sequence[Contact]) -> UpsertCounts:
        """Store ``contacts`` atomically (blocking); returns what happened to them."""
        mine = _Pending(contacts)
        with self._queue_lock:
            self._queue.append(mine)
        with self._writer_lock:
            while not mine.done:  # usually one round: an earlier writer may already have stored ours
                group = self._take_group()
                assert group, "a queued request vanished"
                self._write(group)
        if mine.error is not None:
            raise mine.error
        assert mine.counts is not None
        return mine.counts

    def _take_group(self) -> list[_Pending]:
        """The oldest queued requests, up to ``max_group_contacts`` records (always at least one request)."""
        group: list[_Pending] = []
        self._take_queued(group, 0)
        return group

    def _take_queued(self, group: list[_Pending], size: int) -> None:
        """Move the oldest queued requests into ``group`` (of ``size`` records) while they fit in
        ``max_group_contacts`` (an empty group takes one whatever its size)."""
        with self._queue_lock:
            while self._queue and (not group or size + len(self._queue[0].contacts) <= self.max_group_contacts):
                item = self._queue.popleft()
                group.append(item)
                size += len(item.contacts)

    def _write(self, group: list[_Pending]) -> None:
        results: list[UpsertCounts] = []
        try:
            # The group's size tells the store it is a small write (SQLite: temporary data in memory); capped, so a
            # huge request is never taken for an initial load (a load's deferred indexes are the import's business).
            expected = min(sum(len(item.contacts) for item in group), self.max_group_contacts)
            with self.store.bulk(expected) as writer:
                size = 0
                parts = isinstance(writer, AddsParts)
                while len(results) < len(group):
                    run = _next_run(group, len(results), parts)
                    results += _write_run(writer, run)
                    size += sum(len(item.contacts) for item in run)
                    if len(results) == len(group):  # requests queued meanwhile join before the commit
                        self._take_queued(group, size)
        except BaseException as failure:
            if not isinstance(failure, Exception):  # interrupted: nobody in the group may wait forever
                for item in group:
                    item.error = RuntimeError(f"the write was interrupted ({type(failure).__name__})")
                raise
            if isinstance(failure, StoreUnavailable):  # (busy or full: alone it fails the same)
                for item in group:
                    item.error = failure
                return
            # Find the culprit: each request alone, as the store's upsert writes it. A lone request too: upsert runs
            # again a transaction the database aborted for a passing reason (a PostgreSQL deadlock), the group's not.
            for item in group:
                try:
                    item.counts = self.store.upsert(item.contacts)
                except Exception as own_failure:
                    item.error = own_failure
            return
        for item, counts in zip(group, results, strict=True):
            item.counts = counts


def _next_run(group: list[_Pending], start: int, parts: bool) -> list[_Pending]:
    """The requests of ``group`` from ``start`` to write in one call: one, or (``parts``) as many as follow it
    while each is a plain list of contacts (not a platform's packed rows) and they hold WRITE_CHUNK at most."""
    run = [group[start]]
    size = len(group[start].contacts)
    while parts and type(run[0].contacts) is list and start + len(run) < len(group):
        following = group[start + len(run)]
        size += len(following.contacts)
        if type(following.contacts) is not list or size > WRITE_CHUNK:
            break
        run.append(following)
    return run


def _write_run(writer: BulkWriter, run: list[_Pending]) -> list[UpsertCounts]:
    """Write ``run`` (``_next_run``) with ``writer``; what each of its requests did."""
    if len(run) > 1 and isinstance(writer, AddsParts):
        return writer.add_parts([item.contacts for item in run])
    return [counted_add(writer, run[0].contacts)]

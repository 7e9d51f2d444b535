"""The decoded metric rollups a store keeps in memory for its process (``RollupCache``), on any backend."""

from __future__ import annotations

import threading
from collections import OrderedDict

from metrics.rollup import RollupDays


class RollupCache:
    """Decoded rollup tables of recent questions, kept by the store for its process: a question about the
    same days (the next one, usually) reuses them instead of reading and unpacking megabytes of blobs.

    Exact: entries are kept under the rollups' generation, which every refresh bumps in its own transaction,
    so a snapshot only ever finds tables decoded from what it would read itself. Stale days are not part of
    an entry (they change with every write) but read by each question.

    Only the newest generation seen is kept: once a question has read a newer one, no later snapshot reads an
    older one again, so its tables would only take memory (a server that refreshes every few seconds filled the
    cache to its limit with them). Within it, least recently used entries go first past ``max_bytes``.
    """

    def __init__(self, max_bytes: int = 64 * 2**20):
        self._max_bytes = max_bytes
        self._bytes = 0
        self._generation = -1  # the newest seen
        self._entries: OrderedDict[tuple[object, ...], RollupDays] = OrderedDict()
        self._values: dict[tuple[object, ...], list[str]] = {}
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """Bytes of the decoded tables held now."""
        with self._lock:
            return self._bytes

    def get(self, generation: int, key: tuple[object, ...]) -> RollupDays | None:
        with self._lock:
            if generation != self._generation:
                return None
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def get_values(self, generation: int, key: tuple[object, ...]) -> list[str] | None:
        with self._lock:
            return self._values.get(key) if generation == self._generation else None

    def put_values(self, generation: int, key: tuple[object, ...], values: list[str]) -> None:
        with self._lock:
            if self._newest(generation):
                self._values[key] = values

    def put(self, generation: int, key: tuple[object, ...], entry: RollupDays) -> None:
        size = _size(entry)
        if size > self._max_bytes:
            return
        for array in (entry.days, entry.table, entry.units):
            if array is not None:
                array.setflags(write=False)  # shared by every question that finds it
        with self._lock:
            if not self._newest(generation) or key in self._entries:
                return
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self._max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= _size(old)

    def _newest(self, generation: int) -> bool:
        """Whether ``generation`` is the newest seen (older ones are not kept); a newer one replaces what is held."""
        if generation > self._generation:
            self._generation = generation
            self._entries.clear()
            self._values.clear()
            self._bytes = 0
        return generation == self._generation


def _size(entry: RollupDays) -> int:
    return sum(array.nbytes for array in (entry.days, entry.table, entry.units) if array is not None)

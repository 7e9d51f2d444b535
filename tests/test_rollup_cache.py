"""The decoded rollups a store keeps in memory (``RollupCache``): only the newest generation's, within its limit."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np

from bot.storage import ContactStore
from bot.storage.rollup_cache import RollupCache
from metrics.engine import compute
from metrics.query import MetricQuery
from metrics.rollup import RollupDays
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_SECOND, parse_instant
from tests.builders import contact
from tests.store_support import needs_rollups

NEW_YORK = ZoneInfo("America/New_York")
BASE = parse_instant("2026-03-04T00:00:00", NEW_YORK)


def tables(rows: int) -> RollupDays:
    return RollupDays(values=["a"], days=np.zeros(rows, dtype=np.int64), table=np.zeros((rows, 4), dtype=np.int64))


def test_a_newer_generation_replaces_what_is_held() -> None:
    cache = RollupCache()
    cache.put(1, ("day", 1), tables(100))
    cache.put(1, ("day", 2), tables(100))
    cache.put_values(1, ("values", "team"), ["a"])
    assert cache.size_bytes == 2 * 100 * 5 * 8
    cache.put(2, ("day", 1), tables(10))
    assert cache.size_bytes == 10 * 5 * 8  # generation 1's tables are gone, not kept until the limit
    assert cache.get(1, ("day", 2)) is None
    assert cache.get_values(1, ("values", "team")) is None
    assert cache.get(2, ("day", 1)) is not None


def test_an_older_generation_is_neither_kept_nor_found() -> None:
    """A question on a snapshot taken before the last refresh decodes its own tables and does not keep them."""
    cache = RollupCache()
    cache.put(5, ("day", 1), tables(10))
    cache.put(4, ("day", 1), tables(20))
    cache.put_values(4, ("values", "team"), ["old"])
    assert cache.get(4, ("day", 1)) is None
    assert cache.get_values(4, ("values", "team")) is None
    found = cache.get(5, ("day", 1))
    assert found is not None and len(found.table) == 10


def test_least_recently_used_tables_go_past_the_limit() -> None:
    cache = RollupCache(max_bytes=3 * 100 * 5 * 8)
    for day in range(3):
        cache.put(1, ("day", day), tables(100))
    assert cache.get(1, ("day", 0)) is not None  # now the most recently used
    cache.put(1, ("day", 3), tables(100))
    assert cache.get(1, ("day", 1)) is None
    assert all(cache.get(1, ("day", day)) is not None for day in (0, 2, 3))
    assert cache.size_bytes == 3 * 100 * 5 * 8


def test_a_store_keeps_one_generation_of_tables_however_often_it_refreshes(store: ContactStore) -> None:
    """A server refreshes its rollups every few seconds under writes; each question after a refresh decodes the
    tables again. The tables of earlier refreshes are dropped, so the cache does not fill to its limit with
    tables no question will read again (the soak saw the server's memory rise with them)."""
    needs_rollups(store)
    contacts = [
        contact(f"d{day}-{n}", f"k{(day * 3 + n) % 7}", (BASE + day * US_PER_DAY + (9 + n) * US_PER_HOUR) / US_PER_SECOND,
                zone=NEW_YORK, team="blue")
        for day in range(14)
        for n in range(3)
    ]  # fmt: skip
    store.upsert(contacts)
    query = MetricQuery("acr", 3 * US_PER_DAY, BASE, BASE + 14 * US_PER_DAY, BASE + 20 * US_PER_DAY, (), "day")
    cache: RollupCache = store._rollup_cache  # type: ignore[attr-defined]  # (both stores keep one)
    store.refresh_rollups(NEW_YORK)
    first = compute(store, query, NEW_YORK)
    one_generation = cache.size_bytes
    assert one_generation > 0
    for n in range(6):
        later = (BASE + (n + 1) * US_PER_DAY + 20 * US_PER_HOUR) / US_PER_SECOND
        store.upsert([contact(f"late-{n}", "k-late", later, zone=NEW_YORK, team="blue")])
        store.refresh_rollups(NEW_YORK)
        assert compute(store, query, NEW_YORK).total.matured >= first.total.matured
        assert cache.size_bytes <= one_generation * 1.5  # before: one more generation's tables each time

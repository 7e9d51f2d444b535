"""The exact metric rollups, whatever the backend: building a day's buckets, and reading them for a question.

Every backend keeps the same tables (``metric_rollup_day`` and ``metric_rollup_hour``: one packed table of day
buckets, and one of hour buckets, per dimension and local day, in the zone they were built for;
``metric_rollup_value``: the numbers of dimension values; ``metric_rollup_dirty``: UTC days changed since they
were rolled up; ``metric_rollup_state``: the zone and a generation). Their columns and how they answer are in
``metrics/rollup.py``. A write marks the UTC days it may have changed in the same transaction as the change; a
local day overlapping a dirty UTC day is counted from contacts until a refresh rebuilds it. A backend supplies
the SQL (``sqlite_rollups``, ``postgres_rollups``); the numbers are worked out here, once.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta, tzinfo
from typing import Any

import numpy as np
import numpy.typing as npt

from bot.storage.rollup_cache import RollupCache
from metrics.definitions import returns_within
from metrics.periods import local_date, local_midnight_us
from metrics.rollup import (
    EVERYONE,
    NO_VALUE,
    ROLLUP_COLUMNS,
    ROLLUP_WINDOW_DAYS,
    ROLLUP_WINDOWS_US,
    SLOTS_PER_UNIT_DAY,
    RollupDays,
    Table,
    hour_rows,
    pack,
    pack_hours,
    unpack,
    unpack_hours,
)
from metrics.timeutil import US_PER_DAY, US_PER_HOUR

DIMENSIONS = ("agent", "team", "queue", "channel", "reason")
# The columns of metric_contacts a day's rebuild reads, in this order.
DAY_ROW_COLUMNS = "agent, team, queue, channel, reason, tier, escalated, resolved, started_us, end_us, next_repeat_us"
_NO_NEXT_REPEAT = 2**62  # stands for "no later repeatable contact": after any end + W
Blob = tuple[str, int, bytes]  # (dimension, local day ordinal, packed table)


def zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def local_days_of_utc_day(utc_day: int, zone: tzinfo) -> Iterator[date]:
    """The local calendar days that UTC day number ``utc_day`` overlaps (one, two or three)."""
    first = local_date(utc_day * US_PER_DAY, zone)
    last = local_date((utc_day + 1) * US_PER_DAY - 1, zone)
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def local_days_of(utc_days: Sequence[int], zone: tzinfo) -> list[date]:
    """Every local day overlapping one of these UTC days, in order."""
    return sorted({day for utc_day in utc_days for day in local_days_of_utc_day(utc_day, zone)})


def day_bounds(day: date, zone: tzinfo) -> tuple[int, int]:
    """``[start, end)`` of a local day, in µs."""
    return local_midnight_us(day, zone), local_midnight_us(day + timedelta(days=1), zone)


# --- building ---------------------------------------------------------------------------------------


def build_day(
    rows: Sequence[Sequence[Any]], day: date, day_start_us: int, value_id: Callable[[str, str], int]
) -> tuple[list[Blob], list[Blob]]:
    """The day and hour bucket tables of one local day from its candidates (rows of DAY_ROW_COLUMNS): one pass,
    grouped five ways with numpy, each by value (day buckets) and by value and hour (hour buckets).

    ``value_id(dimension, value)`` numbers a value ("" for none), assigning new numbers as needed."""
    ordinal = day.toordinal()
    if not rows:
        return [], []
    agent, team, queue, channel, reason, tier, escalated, resolved, started, ended, next_repeat = zip(
        *rows, strict=True
    )
    start = np.array(started, dtype=np.int64)
    end = np.array(ended, dtype=np.int64)
    slot = (start - day_start_us) // US_PER_HOUR
    following = np.array([_NO_NEXT_REPEAT if v is None else v for v in next_repeat], dtype=np.int64)
    tier1 = np.array(tier, dtype=np.int64) == 1
    # tier = 1, not escalated, resolved not false (a missing disposition is not a failure)
    tier1_base = tier1 & ~np.array(escalated, dtype=bool) & np.array([r is None or bool(r) for r in resolved])
    no_repeat = [~returns_within(following, end, days * US_PER_DAY) for days in ROLLUP_WINDOW_DAYS]
    measures = np.stack(
        [np.ones(len(rows), dtype=bool), tier1, *no_repeat, *(tier1_base & ok for ok in no_repeat)], axis=1
    ).astype(np.int64)
    import pandas as pd  # (here: importing pandas takes half a second, and most commands never roll up)

    day_blobs, hour_blobs = [], []
    columns = (("agent", agent), ("team", team), ("queue", queue), ("channel", channel), ("reason", reason))
    for dim, column in ((EVERYONE, None), *columns):
        if column is None:
            keys = np.zeros(len(rows), dtype=np.int64)
            keys[:] = value_id(dim, NO_VALUE)
        else:
            codes, uniques = pd.factorize(np.asarray(column, dtype=object))  # None -> code -1
            numbers = np.array([*(value_id(dim, str(v)) for v in uniques), value_id(dim, NO_VALUE)], dtype=np.int64)
            keys = numbers[codes]  # code -1 picks the last: the number of "" (no value)
        value_ids, sums, (min_start, max_start, min_end, max_end) = _buckets(keys, measures, start, end)
        day_table = np.column_stack([value_ids, sums[:, :2], min_start, max_start, min_end, max_end, sums[:, 2:]])
        day_blobs.append((dim, ordinal, pack(day_table)))
        units, sums, (_, _, min_end, max_end) = _buckets(keys * SLOTS_PER_UNIT_DAY + slot, measures, start, end)
        value_ids, slots = np.divmod(units, SLOTS_PER_UNIT_DAY)
        hour_table = np.column_stack([value_ids, slots, sums[:, :2], min_end, max_end, sums[:, 2:]])
        hour_blobs.append((dim, ordinal, pack_hours(hour_table, day_start_us)))
    return day_blobs, hour_blobs


def _buckets(
    keys: npt.NDArray[np.int64], measures: Table, start: npt.NDArray[np.int64], end: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], Table, tuple[npt.NDArray[np.int64], ...]]:
    """Group rows by key: the keys in order, the measures' sums, and min/max of start and end."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    firsts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    start, end = start[order], end[order]
    bounds = (
        np.minimum.reduceat(start, firsts),
        np.maximum.reduceat(start, firsts),
        np.minimum.reduceat(end, firsts),
        np.maximum.reduceat(end, firsts),
    )
    return sorted_keys[firsts], np.add.reduceat(measures[order], firsts, axis=0), bounds


class ValueIds:
    """Numbers for dimension values, assigned once and kept (the packed tables refer to them): the known ones
    are given, a new one is announced to ``record(dim, value, number)`` (which stores it)."""

    def __init__(self, known: Sequence[tuple[str, str, int]], record: Callable[[str, str, int], object]):
        self._record = record
        self._ids: dict[tuple[str, str], int] = {(dim, value): int(number) for dim, value, number in known}
        self._next: dict[str, int] = {}
        for (dim, _), number in self._ids.items():
            self._next[dim] = max(self._next.get(dim, 0), number + 1)

    def get(self, dim: str, value: str) -> int:
        number = self._ids.get((dim, value))
        if number is None:
            number = self._next.get(dim, 0)
            self._next[dim] = number + 1
            self._ids[(dim, value)] = number
            self._record(dim, value, number)
        return number


# --- reading ------------------------------------------------------------------------------------------


class RollupReader:
    """The rollup half of a ``MetricReader``, over one read snapshot; a backend supplies four small reads.

    Decoded tables are kept in the store's ``RollupCache`` under the rollups' generation (bumped by every
    refresh in its own transaction), so a snapshot only ever finds tables decoded from what it would read itself.
    """

    def __init__(self, zone: tzinfo, cache: RollupCache | None):
        self._zone = zone
        state, dirty = self._state()
        self._rollups_current = state.get("zone") == zone_name(zone)
        self._generation = int(state.get("generation", 0))
        self._zone_name = zone_name(zone)
        self._dirty = sorted(int(utc_day) for utc_day in dirty)
        self._cache = cache if cache is not None else RollupCache(max_bytes=0)

    @property
    def needs_refresh(self) -> bool:
        """Whether a refresh has work to do: the rollups were built for another zone (or never), or days changed."""
        return not self._rollups_current or bool(self._dirty)

    # What a backend supplies (its SQL).
    def _state(self) -> tuple[dict[str, str], Sequence[int]]:
        """metric_rollup_state as a dict, and every dirty UTC day: read once, first (a server answers both at
        once; there are few dirty days, as each question or refresh cleans them)."""
        raise NotImplementedError

    def _day_blobs(self, dimension: str, first: int, last: int) -> Sequence[tuple[int, bytes]]:
        """(day, data) of metric_rollup_day for the dimension and days first..last (ordinals)."""
        raise NotImplementedError

    def _hour_blobs(self, dimension: str, days: Sequence[int]) -> Sequence[tuple[int, bytes]]:
        """(day, data) of metric_rollup_hour for the dimension and these days (ordinals)."""
        raise NotImplementedError

    def _value_numbers(self, dimension: str) -> Sequence[tuple[int, str]]:
        """(id, value) of metric_rollup_value for the dimension."""
        raise NotImplementedError

    # The MetricReader's rollup methods.
    def rollup_windows(self) -> frozenset[int]:
        return ROLLUP_WINDOWS_US if self._rollups_current else frozenset()

    def rollup_days(self, dimension: str, first_day: date, last_day: date) -> RollupDays | None:
        if not self._rollups_current or dimension not in (EVERYONE, *DIMENSIONS):
            return None
        first, last = first_day.toordinal(), last_day.toordinal()
        key = (self._zone_name, "day", dimension, first, last)
        found = self._cache.get(self._generation, key)
        if found is None:
            blobs = self._day_blobs(dimension, first, last)
            tables = [unpack(bytes(data)) for _, data in blobs]
            sizes = [len(table) for table in tables]
            table = np.empty((sum(sizes), len(ROLLUP_COLUMNS)), dtype=np.int64, order="F")  # answered by column
            position = 0
            for day_table in tables:
                table[position : position + len(day_table)] = day_table
                position += len(day_table)
            found = RollupDays(
                values=self._values(dimension),
                days=np.repeat(np.asarray([day for day, _ in blobs], dtype=np.int64), sizes),
                table=table,
            )
            self._cache.put(self._generation, key, found)
        return RollupDays(found.values, found.days, found.table, stale=self._stale_days(first_day, last_day))

    def rollup_hours(self, dimension: str, days: Sequence[date]) -> RollupDays | None:
        if not self._rollups_current or dimension not in (EVERYONE, *DIMENSIONS):
            return None
        key = (self._zone_name, "hour", dimension, *(day.toordinal() for day in days))
        found = self._cache.get(self._generation, key)
        if found is None:
            found = self._read_hours(dimension, days)
            self._cache.put(self._generation, key, found)
        return found

    def _read_hours(self, dimension: str, days: Sequence[date]) -> RollupDays:
        wanted = {day.toordinal(): day for day in days}
        blobs = [(ordinal, bytes(data)) for ordinal, data in self._hour_blobs(dimension, list(wanted))]
        sizes = [hour_rows(data) for _, data in blobs]
        table = np.empty((sum(sizes), len(ROLLUP_COLUMNS)), dtype=np.int64, order="F")  # answered by column
        units = np.empty(len(table), dtype=np.int64)
        position = 0
        for (ordinal, data), size in zip(blobs, sizes, strict=True):
            start, end = day_bounds(wanted.pop(ordinal), self._zone)
            _, slots = unpack_hours(data, start, end, out=table[position : position + size])
            units[position : position + size] = slots + ordinal * SLOTS_PER_UNIT_DAY
            position += size
        return RollupDays(
            values=self._values(dimension),
            days=units // SLOTS_PER_UNIT_DAY,
            table=table,
            stale=set(wanted.values()),  # no hour buckets stored for these days
            units=units,
        )

    def _values(self, dimension: str) -> list[str]:
        """The texts of the value numbers of ``dimension`` (dense: 0..n-1); numbers are only ever added by a
        refresh, so the list is kept with the decoded tables of the same generation."""
        key = (self._zone_name, "values", dimension)
        found = self._cache.get_values(self._generation, key)
        if found is None:
            by_number = dict(self._value_numbers(dimension))
            found = [by_number.get(number, NO_VALUE) for number in range(len(by_number))]
            self._cache.put_values(self._generation, key, found)
        return found

    def _stale_days(self, first_day: date, last_day: date) -> set[date]:
        """Local days in first..last overlapping a dirty UTC day."""
        lo = local_midnight_us(first_day, self._zone) // US_PER_DAY
        hi = local_midnight_us(last_day + timedelta(days=1), self._zone) // US_PER_DAY
        stale: set[date] = set()
        for utc_day in self._dirty[bisect_left(self._dirty, lo) : bisect_right(self._dirty, hi)]:
            stale.update(d for d in local_days_of_utc_day(int(utc_day), self._zone) if first_day <= d <= last_day)
        return stale

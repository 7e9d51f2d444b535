"""Answering metric questions in SQL: the ``MetricReader`` of the SQLite store, over ``metric_contacts``.

The rules are those of ``metrics.definitions``, stated over the columns of ``metric_contacts``, which holds
exactly the candidates (contacts with direction = 'inbound' AND agent IS NOT NULL):
  candidate      since <= started_us < until (+ filters)
  repeat in W    next_repeat_us IS NOT NULL AND next_repeat_us <= end_us + W
  matured        end_us + W <= as_of
  tier-1 success tier = 1 AND escalated = 0 AND resolved IS NOT 0 AND no repeat in W

Whole days are answered from the rollups (built by ``sqlite_rollups``, kept decoded by
``sqlite_rollup_cache``); the rest is counted from ``metric_contacts``.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from datetime import date, timedelta, tzinfo

import numpy as np

from bot.storage.sqlite_rollup_cache import RollupCache
from bot.storage.sqlite_rollups import local_days_of_utc_day, zone_name
from metrics.engine import RowSpec
from metrics.periods import local_midnight_us
from metrics.query import Counts, Dimension
from metrics.rollup import (
    EVERYONE,
    NO_VALUE,
    ROLLUP_COLUMNS,
    ROLLUP_WINDOWS_US,
    SLOTS_PER_UNIT_DAY,
    RollupDays,
    hour_rows,
    unpack,
    unpack_hours,
)
from metrics.timeutil import US_PER_DAY
from metrics.windows import QUICK_RETURN_US, QuickReturns

DIMENSIONS: tuple[Dimension, ...] = ("agent", "team", "queue", "channel", "reason")
# The restatements of metrics.definitions, listed in docs/metrics.md ("Where the rules are restated").
CANDIDATE = "direction = 'inbound' AND agent IS NOT NULL"  # is_handled_inbound: the contacts the metrics count
NO_REPEAT = "(next_repeat_us IS NULL OR next_repeat_us > end_us + {w})"
TIER1_SUCCESS = "(tier = 1 AND escalated = 0 AND resolved IS NOT 0)"

# The candidates' own table (created by migration ``m_metric_contacts``), as the writer fills it.
METRIC_CONTACTS_COLUMNS = (
    "started_us", "pk", "end_us", "next_repeat_us", "tier", "escalated", "resolved", "agent", "team", "queue",
    "channel",
)  # fmt: skip
CANDIDATE_COLUMNS = (*METRIC_CONTACTS_COLUMNS, "reason")  # and the reason (migration ``m_metric_contacts_reason``)


# --- reading ------------------------------------------------------------------------------------------


class SQLiteMetricReader:
    """The engine's ``MetricReader`` over one read transaction of a reader connection."""

    def __init__(self, conn: sqlite3.Connection, zone: tzinfo, cache: RollupCache | None = None):
        self._conn = conn
        self._zone = zone
        state = dict(conn.execute("SELECT name, value FROM metric_rollup_state").fetchall())
        self._rollups_current = state.get("zone") == zone_name(zone)
        self._generation = (int(state.get("generation", 0)), zone_name(zone))
        self._cache = cache if cache is not None else RollupCache(max_bytes=0)

    def rollup_windows(self) -> frozenset[int]:
        return ROLLUP_WINDOWS_US if self._rollups_current else frozenset()

    def rollup_days(self, dimension: str, first_day: date, last_day: date) -> RollupDays | None:
        if not self._rollups_current or dimension not in (EVERYONE, *DIMENSIONS):
            return None
        first, last = first_day.toordinal(), last_day.toordinal()
        key = (*self._generation, "day", dimension, first, last)
        found = self._cache.get(key)
        if found is None:
            blobs = self._conn.execute(
                "SELECT day, data FROM metric_rollup_day WHERE dim = ? AND day BETWEEN ? AND ?",
                (dimension, first, last),
            ).fetchall()
            tables = [unpack(data) for _, data in blobs]
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
            self._cache.put(key, found)
        return RollupDays(found.values, found.days, found.table, stale=self._stale_days(first_day, last_day))

    def rollup_hours(self, dimension: str, days: Sequence[date]) -> RollupDays | None:
        if not self._rollups_current or dimension not in (EVERYONE, *DIMENSIONS):
            return None
        key = (*self._generation, "hour", dimension, *(day.toordinal() for day in days))
        found = self._cache.get(key)
        if found is None:
            found = self._read_hours(dimension, days)
            self._cache.put(key, found)
        return found

    def _read_hours(self, dimension: str, days: Sequence[date]) -> RollupDays:
        wanted = {day.toordinal(): day for day in days}
        placeholders = ", ".join("?" * len(wanted))
        blobs = self._conn.execute(
            f"SELECT day, data FROM metric_rollup_hour WHERE dim = ? AND day IN ({placeholders})",
            (dimension, *wanted),
        ).fetchall()
        sizes = [hour_rows(data) for _, data in blobs]
        table = np.empty((sum(sizes), len(ROLLUP_COLUMNS)), dtype=np.int64, order="F")  # answered by column
        units = np.empty(len(table), dtype=np.int64)
        position = 0
        for (ordinal, data), size in zip(blobs, sizes, strict=True):
            day = wanted.pop(ordinal)
            start, end = local_midnight_us(day, self._zone), local_midnight_us(day + timedelta(days=1), self._zone)
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
        key = (*self._generation, "values", dimension)
        found = self._cache.get_values(key)
        if found is None:
            by_number = dict(
                self._conn.execute("SELECT id, value FROM metric_rollup_value WHERE dim = ?", (dimension,)).fetchall()
            )
            found = [by_number.get(number, NO_VALUE) for number in range(len(by_number))]
            self._cache.put_values(key, found)
        return found

    def _stale_days(self, first_day: date, last_day: date) -> set[date]:
        """Local days in first..last overlapping a dirty UTC day."""
        lo = local_midnight_us(first_day, self._zone) // US_PER_DAY
        hi = local_midnight_us(last_day + timedelta(days=1), self._zone) // US_PER_DAY
        stale: set[date] = set()
        for (utc_day,) in self._conn.execute(
            "SELECT utc_day FROM metric_rollup_dirty WHERE utc_day BETWEEN ? AND ?", (lo, hi)
        ):
            stale.update(d for d in local_days_of_utc_day(int(utc_day), self._zone) if first_day <= d <= last_day)
        return stale

    def row_counts(self, spec: RowSpec) -> dict[str | None, Counts]:
        no_repeat = NO_REPEAT.format(w=":w")
        success = no_repeat if spec.metric == "acr" else f"{TIER1_SUCCESS} AND {no_repeat}"
        where = "started_us >= :lo AND started_us < :hi"
        params: dict[str, object] = {"w": spec.window_us, "matured_by": spec.as_of_us - spec.window_us}
        if spec.metric == "tier1":
            where += " AND tier = 1"
        for index, (dimension, value) in enumerate(spec.filters):
            if dimension not in (*DIMENSIONS, "tier"):
                raise ValueError(f"unknown dimension {dimension!r}")
            where += f" AND {dimension} = :f{index}"
            params[f"f{index}"] = int(value) if dimension == "tier" else value
        if spec.among is not None:
            dimension, values = spec.among
            if dimension not in DIMENSIONS:
                raise ValueError(f"unknown dimension {dimension!r}")
            where += f" AND {dimension} IN ({', '.join(f':a{i}' for i in range(len(values)))})"
            params.update({f"a{i}": value for i, value in enumerate(values)})
        if spec.group is not None and spec.group not in DIMENSIONS:
            raise ValueError(f"unknown dimension {spec.group!r}")
        # Matured is end_us <= as_of - W. Ungrouped spans are summed by SQLite; grouped ones are summed here
        # while the rows stream by, which costs about half of SQLite's GROUP BY sorter (measured).
        matured = "end_us <= :matured_by"
        result: dict[str | None, Counts] = {}
        if spec.group is None:
            sql = f"SELECT count(*), sum({matured}), sum({matured} AND {success}) FROM metric_contacts WHERE {where}"
            for span in spec.spans:
                params["lo"], params["hi"] = span.since_us, span.until_us
                total, n_matured, n_resolved = self._conn.execute(sql, params).fetchone()
                if total:
                    label = span.day.isoformat() if span.day is not None else ""
                    counts = Counts(int(n_matured), int(n_resolved), int(total) - int(n_matured))
                    before = result.get(label)
                    result[label] = counts if before is None else before + counts
            return result
        # One code a row: 0 pending, 1 matured and not resolved, 2 resolved; counted by Counter (in C).
        sql = f"SELECT {spec.group}, ({matured}) + ({matured} AND {success}) FROM metric_contacts WHERE {where}"
        coded: Counter[tuple[str | None, int]] = Counter()
        for span in spec.spans:
            params["lo"], params["hi"] = span.since_us, span.until_us
            coded.update(self._conn.execute(sql, params))
        sums: dict[str | None, list[int]] = {}
        for (key, code), number in coded.items():
            tally = sums.setdefault(key, [0, 0, 0])
            if code == 0:
                tally[2] += number
            else:
                tally[0] += number
                tally[1] += number if code == 2 else 0
        return {key: Counts(*tally) for key, tally in sums.items()}


def quick_returns(conn: sqlite3.Connection, spec: QuickReturns) -> list[int]:
    """``metrics.windows.QuickReturns`` from the partial index of the candidates with a repeat within a day
    (migration ``m_metric_contacts_quick_returns``): one pass, one sum per bound."""
    where = [
        "started_us >= :lo AND started_us < :hi AND end_us <= :matured_by",
        f"next_repeat_us <= end_us + {QUICK_RETURN_US}",  # the index's predicate, word for word
    ]
    params: dict[str, object] = {"lo": spec.since_us, "hi": spec.until_us, "matured_by": spec.matured_by_us}
    if spec.metric == "tier1":
        where.append(TIER1_SUCCESS)
    for index, (dimension, value) in enumerate(spec.filters):
        if dimension not in (*DIMENSIONS, "tier"):
            raise ValueError(f"unknown dimension {dimension!r}")
        where.append(f"{dimension} = :f{index}")
        params[f"f{index}"] = int(value) if dimension == "tier" else value
    sums = ", ".join(f"coalesce(sum(next_repeat_us > end_us + :b{i}), 0)" for i in range(len(spec.bounds_us)))
    params.update({f"b{i}": bound for i, bound in enumerate(spec.bounds_us)})
    sql = f"SELECT {sums} FROM metric_contacts INDEXED BY metric_contacts_quick_return WHERE {' AND '.join(where)}"
    return [int(count) for count in conn.execute(sql, params).fetchone()]

"""Building the exact metric rollups of a SQLite store, and knowing which days are stale.

Rollups (``metric_rollup_day`` and ``metric_rollup_hour``: one packed table of day buckets, and one of hour
buckets, per dimension and local day, in the zone they were built for; their columns and how they answer
are in ``metrics/rollup.py``). They are invalidated, never maintained inline: a write marks the UTC days it
may have changed in ``metric_rollup_dirty`` (``mark_dirty``: one cheap statement at the end of the write
transaction, and a trigger for the old day of an updated contact); a local day overlapping a dirty UTC day
is counted from contacts until ``refresh`` rebuilds it. The tables are created by ``sqlite_migrations``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta, tzinfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from metrics.definitions import returns_within
from metrics.periods import local_date, local_midnight_us
from metrics.rollup import EVERYONE, ROLLUP_WINDOW_DAYS, SLOTS_PER_UNIT_DAY, Table, pack, pack_hours
from metrics.timeutil import US_PER_DAY, US_PER_HOUR

_MARK_DIRTY_SQL = f"""
INSERT OR IGNORE INTO metric_rollup_dirty (utc_day)
SELECT DISTINCT c.started_us / {US_PER_DAY} FROM {{scope}}
"""


def mark_dirty(conn: sqlite3.Connection, scope: str) -> None:
    """End-of-write hook: every day holding a contact the write may have changed must be rolled up again.

    ``scope`` is the SQL source of those contacts (as ``c``) that the writer has just worked out (its own
    fields or its next_repeat_us may have changed); the customer index covers started_us, so this reads
    only what the write just read.
    """
    conn.execute(_MARK_DIRTY_SQL.format(scope=scope))


# --- refreshing ---------------------------------------------------------------------------------------


def zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def _rollup_zone(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM metric_rollup_state WHERE name = 'zone'").fetchone()
    return None if row is None else str(row[0])


_DAY_ROWS_SQL = """
SELECT agent, team, queue, channel, reason, tier, escalated, resolved, started_us, end_us, next_repeat_us
FROM metric_contacts WHERE started_us >= ? AND started_us < ?
"""
_NO_NEXT_REPEAT = 2**62  # stands for "no later repeatable contact": after any end + W


def refresh(conn: sqlite3.Connection, zone: tzinfo, max_days: int | None = None) -> int:
    """Rebuild the rollups of dirty days (most recent first, at most ``max_days`` UTC days); returns how many
    UTC days were cleaned. Rebuilds everything when the rollups were built for another time zone.

    Must run inside a write transaction of ``conn``.
    """
    name = zone_name(zone)
    if _rollup_zone(conn) != name:
        _bump_generation(conn)
        conn.execute("DELETE FROM metric_rollup_day")
        conn.execute("DELETE FROM metric_rollup_hour")
        conn.execute(
            f"INSERT OR IGNORE INTO metric_rollup_dirty (utc_day) "
            f"SELECT DISTINCT started_us / {US_PER_DAY} FROM metric_contacts"
        )
        conn.execute("INSERT OR REPLACE INTO metric_rollup_state (name, value) VALUES ('zone', ?)", (name,))
    limit = -1 if max_days is None else max_days
    utc_days = [
        int(row[0])
        for row in conn.execute("SELECT utc_day FROM metric_rollup_dirty ORDER BY utc_day DESC LIMIT ?", (limit,))
    ]
    if not utc_days:
        return 0
    _bump_generation(conn)
    local: set[date] = set()
    for utc_day in utc_days:
        local.update(local_days_of_utc_day(utc_day, zone))
    ids = _ValueIds(conn)
    for day in sorted(local):
        _rebuild_day(conn, day, zone, ids)
    conn.executemany("DELETE FROM metric_rollup_dirty WHERE utc_day = ?", [(d,) for d in utc_days])
    return len(utc_days)


def _bump_generation(conn: sqlite3.Connection) -> None:
    """Mark that the rollup tables change (in the same transaction): decoded copies of them are now old."""
    conn.execute(
        "INSERT INTO metric_rollup_state (name, value) VALUES ('generation', '1') "
        "ON CONFLICT (name) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


class _ValueIds:
    """Numbers for dimension values, assigned once and kept (the packed tables refer to them)."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        self._ids: dict[tuple[str, str], int] = {
            (dim, value): int(number)
            for dim, value, number in conn.execute("SELECT dim, value, id FROM metric_rollup_value")
        }
        self._next: dict[str, int] = {}
        for (dim, _), number in self._ids.items():
            self._next[dim] = max(self._next.get(dim, 0), number + 1)

    def get(self, dim: str, value: str) -> int:
        number = self._ids.get((dim, value))
        if number is None:
            number = self._next.get(dim, 0)
            self._next[dim] = number + 1
            self._ids[(dim, value)] = number
            self._conn.execute(
                "INSERT INTO metric_rollup_value (dim, value, id) VALUES (?, ?, ?)", (dim, value, number)
            )
        return number


def _rebuild_day(conn: sqlite3.Connection, day: date, zone: tzinfo, ids: _ValueIds) -> None:
    """Roll up one local day: one pass over its candidates (time index), grouped five ways with numpy,
    each by value (day buckets) and by value and hour (hour buckets)."""
    lo = local_midnight_us(day, zone)
    hi = local_midnight_us(day + timedelta(days=1), zone)
    ordinal = day.toordinal()
    conn.execute("DELETE FROM metric_rollup_day WHERE day = ?", (ordinal,))
    conn.execute("DELETE FROM metric_rollup_hour WHERE day = ?", (ordinal,))
    rows = conn.execute(_DAY_ROWS_SQL, (lo, hi)).fetchall()
    if not rows:
        return
    agent, team, queue, channel, reason, tier, escalated, resolved, started, ended, next_repeat = zip(
        *rows, strict=True
    )
    start = np.array(started, dtype=np.int64)
    end = np.array(ended, dtype=np.int64)
    slot = (start - lo) // US_PER_HOUR
    following = np.array([_NO_NEXT_REPEAT if v is None else v for v in next_repeat], dtype=np.int64)
    tier1 = np.array(tier, dtype=np.int64) == 1
    # tier = 1 AND escalated = 0 AND resolved IS NOT 0 (a missing disposition is not a failure)
    tier1_base = tier1 & ~np.array(escalated, dtype=bool) & np.array([r != 0 for r in resolved], dtype=bool)
    no_repeat = [~returns_within(following, end, days * US_PER_DAY) for days in ROLLUP_WINDOW_DAYS]
    measures = np.stack(
        [np.ones(len(rows), dtype=bool), tier1, *no_repeat, *(tier1_base & ok for ok in no_repeat)], axis=1
    ).astype(np.int64)
    day_blobs, hour_blobs = [], []
    columns = (("agent", agent), ("team", team), ("queue", queue), ("channel", channel), ("reason", reason))
    for dim, column in ((EVERYONE, None), *columns):
        if column is None:
            keys = np.zeros(len(rows), dtype=np.int64)
            keys[:] = ids.get(dim, "")
        else:
            codes, uniques = pd.factorize(np.asarray(column, dtype=object))  # None -> code -1
            numbers = np.array([*(ids.get(dim, str(v)) for v in uniques), ids.get(dim, "")], dtype=np.int64)
            keys = numbers[codes]  # code -1 picks the last: the number of "" (no value)
        value_ids, sums, (min_start, max_start, min_end, max_end) = _buckets(keys, measures, start, end)
        day_table = np.column_stack([value_ids, sums[:, :2], min_start, max_start, min_end, max_end, sums[:, 2:]])
        day_blobs.append((dim, ordinal, pack(day_table)))
        units, sums, (_, _, min_end, max_end) = _buckets(keys * SLOTS_PER_UNIT_DAY + slot, measures, start, end)
        value_ids, slots = np.divmod(units, SLOTS_PER_UNIT_DAY)
        hour_table = np.column_stack([value_ids, slots, sums[:, :2], min_end, max_end, sums[:, 2:]])
        hour_blobs.append((dim, ordinal, pack_hours(hour_table, lo)))
    conn.executemany("INSERT INTO metric_rollup_day (dim, day, data) VALUES (?, ?, ?)", day_blobs)
    conn.executemany("INSERT INTO metric_rollup_hour (dim, day, data) VALUES (?, ?, ?)", hour_blobs)


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


def stale_days(conn: sqlite3.Connection, zone: tzinfo) -> int:
    """Dirty UTC days still to rebuild for ``zone``; -1 when the rollups were built for another zone (or never)."""
    if _rollup_zone(conn) != zone_name(zone):
        return -1
    return int(conn.execute("SELECT count(*) FROM metric_rollup_dirty").fetchone()[0])


def local_days_of_utc_day(utc_day: int, zone: tzinfo) -> Iterator[date]:
    """The local calendar days that UTC day number ``utc_day`` overlaps (one, two or three)."""
    first = local_date(utc_day * US_PER_DAY, zone)
    last = local_date((utc_day + 1) * US_PER_DAY - 1, zone)
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)

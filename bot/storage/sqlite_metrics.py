"""SQL for the metrics: counting candidates from contacts, and the exact daily rollups.

The rules are those of ``metrics.definitions``, stated over indexed columns:
  candidate      direction = 'inbound' AND agent IS NOT NULL AND since <= started_us < until (+ filters)
  repeat in W    next_repeat_us IS NOT NULL AND next_repeat_us <= end_us + W
  matured        end_us + W <= as_of
  tier-1 success tier = 1 AND escalated = 0 AND resolved IS NOT 0 AND no repeat in W

Rollups (``metric_rollup_day``: one packed table of buckets per dimension and local day, in the zone they
were built for; their columns and how they answer are in ``metrics/rollup.py``). They are invalidated, never
maintained inline: a write marks the UTC days it may have changed in ``metric_rollup_dirty`` (one cheap
statement at the end of the write transaction, and a trigger for the old day of an updated contact); a local
day overlapping a dirty UTC day is counted from contacts until ``refresh`` rebuilds it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import date, timedelta, tzinfo

import numpy as np
import pandas as pd

from metrics.engine import RowSpec
from metrics.periods import local_date, local_midnight_us
from metrics.query import Counts, Dimension
from metrics.rollup import (
    EVERYONE,
    NO_VALUE,
    ROLLUP_COLUMNS,
    ROLLUP_WINDOW_DAYS,
    ROLLUP_WINDOWS_US,
    RollupDays,
    Table,
    pack,
    unpack,
)
from metrics.timeutil import US_PER_DAY

DIMENSIONS: tuple[Dimension, ...] = ("agent", "team", "queue", "channel")
CANDIDATE = "direction = 'inbound' AND agent IS NOT NULL"
NO_REPEAT = "(next_repeat_us IS NULL OR next_repeat_us > end_us + {w})"
TIER1_SUCCESS = "(tier = 1 AND escalated = 0 AND resolved IS NOT 0)"

# --- schema (used by the migration) -----------------------------------------------------------------

SCHEMA = [
    # Counting from contacts: by time (any scope, breakdowns, edge days; covering, so a count never touches
    # the table) and by agent (the scope asked most; narrow, as each index slows every import: measured, a
    # covering agent and team index cost ~20% of ingest speed, these two ~5%). Partial: only candidates.
    f"""CREATE INDEX contacts_candidates_time ON contacts
        (started_us, end_us, next_repeat_us, tier, escalated, resolved, agent, team, queue, channel)
        WHERE {CANDIDATE}""",
    f"CREATE INDEX contacts_candidates_agent ON contacts (agent, started_us) WHERE {CANDIDATE}",
    # One packed bucket table per (dimension, local day): see metrics/rollup.py for its columns and meaning.
    "CREATE TABLE metric_rollup_day (dim TEXT NOT NULL, day INTEGER NOT NULL, data BLOB NOT NULL, "
    "PRIMARY KEY (dim, day)) WITHOUT ROWID",
    # The dimension values the packed tables refer to by number.
    "CREATE TABLE metric_rollup_value (dim TEXT NOT NULL, value TEXT NOT NULL, id INTEGER NOT NULL, "
    "PRIMARY KEY (dim, value)) WITHOUT ROWID",
    "CREATE TABLE metric_rollup_dirty (utc_day INTEGER PRIMARY KEY)",
    "CREATE TABLE metric_rollup_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # The old day of an updated contact (its new day is marked by mark_dirty at the end of the write).
    # Not fired by the next_repeat_us refresh, which sets only that column.
    # (NOT EXISTS rather than OR IGNORE: inside a trigger the outer upsert's conflict policy would win.)
    f"""CREATE TRIGGER contacts_rollup_dirty_update
        AFTER UPDATE OF customer_id, agent, team, queue, channel, direction, tier, escalated, resolved,
            parent_id, started_us, ended_us ON contacts
        BEGIN
            INSERT INTO metric_rollup_dirty (utc_day) SELECT old.started_us / {US_PER_DAY}
            WHERE NOT EXISTS (SELECT 1 FROM metric_rollup_dirty WHERE utc_day = old.started_us / {US_PER_DAY});
        END""",
    f"""CREATE TRIGGER contacts_rollup_dirty_delete AFTER DELETE ON contacts
        BEGIN
            INSERT INTO metric_rollup_dirty (utc_day) SELECT old.started_us / {US_PER_DAY}
            WHERE NOT EXISTS (SELECT 1 FROM metric_rollup_dirty WHERE utc_day = old.started_us / {US_PER_DAY});
        END""",
    # Existing contacts: every day of them still has to be rolled up.
    f"INSERT OR IGNORE INTO metric_rollup_dirty (utc_day) SELECT DISTINCT started_us / {US_PER_DAY} FROM contacts",
]

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


_DAY_ROWS_SQL = f"""
SELECT agent, team, queue, channel, tier, escalated, resolved, started_us, end_us, next_repeat_us
FROM contacts WHERE {CANDIDATE} AND started_us >= ? AND started_us < ?
"""
_NO_NEXT_REPEAT = 2**62  # stands for "no later repeatable contact": after any end + W


def refresh(conn: sqlite3.Connection, zone: tzinfo, max_days: int | None = None) -> int:
    """Rebuild the rollups of dirty days (most recent first, at most ``max_days`` UTC days); returns how many
    UTC days were cleaned. Rebuilds everything when the rollups were built for another time zone.

    Must run inside a write transaction of ``conn``.
    """
    name = zone_name(zone)
    if _rollup_zone(conn) != name:
        conn.execute("DELETE FROM metric_rollup_day")
        conn.execute(
            f"INSERT OR IGNORE INTO metric_rollup_dirty (utc_day) "
            f"SELECT DISTINCT started_us / {US_PER_DAY} FROM contacts WHERE {CANDIDATE}"
        )
        conn.execute("INSERT OR REPLACE INTO metric_rollup_state (name, value) VALUES ('zone', ?)", (name,))
    limit = -1 if max_days is None else max_days
    utc_days = [
        int(row[0])
        for row in conn.execute("SELECT utc_day FROM metric_rollup_dirty ORDER BY utc_day DESC LIMIT ?", (limit,))
    ]
    if not utc_days:
        return 0
    local: set[date] = set()
    for utc_day in utc_days:
        local.update(_local_days_of_utc_day(utc_day, zone))
    ids = _ValueIds(conn)
    for day in sorted(local):
        _rebuild_day(conn, day, zone, ids)
    conn.executemany("DELETE FROM metric_rollup_dirty WHERE utc_day = ?", [(d,) for d in utc_days])
    return len(utc_days)


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
    """Roll up one local day: one pass over its candidates (time index), grouped five ways with numpy."""
    lo = local_midnight_us(day, zone)
    hi = local_midnight_us(day + timedelta(days=1), zone)
    ordinal = day.toordinal()
    conn.execute("DELETE FROM metric_rollup_day WHERE day = ?", (ordinal,))
    rows = conn.execute(_DAY_ROWS_SQL, (lo, hi)).fetchall()
    if not rows:
        return
    agent, team, queue, channel, tier, escalated, resolved, started, ended, next_repeat = zip(*rows, strict=True)
    start = np.array(started, dtype=np.int64)
    end = np.array(ended, dtype=np.int64)
    following = np.array([_NO_NEXT_REPEAT if v is None else v for v in next_repeat], dtype=np.int64)
    tier1 = np.array(tier, dtype=np.int64) == 1
    # tier = 1 AND escalated = 0 AND resolved IS NOT 0 (a missing disposition is not a failure)
    tier1_base = tier1 & ~np.array(escalated, dtype=bool) & np.array([r != 0 for r in resolved], dtype=bool)
    no_repeat = [following > end + days * US_PER_DAY for days in ROLLUP_WINDOW_DAYS]
    measures = np.stack(
        [np.ones(len(rows), dtype=bool), tier1, *no_repeat, *(tier1_base & ok for ok in no_repeat)], axis=1
    ).astype(np.int64)
    blobs = []
    for dim, column in ((EVERYONE, None), ("agent", agent), ("team", team), ("queue", queue), ("channel", channel)):
        if column is None:
            keys = np.zeros(len(rows), dtype=np.int64)
            keys[:] = ids.get(dim, "")
        else:
            codes, uniques = pd.factorize(np.asarray(column, dtype=object))  # None -> code -1
            numbers = np.array([*(ids.get(dim, str(v)) for v in uniques), ids.get(dim, "")], dtype=np.int64)
            keys = numbers[codes]  # code -1 picks the last: the number of "" (no value)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        firsts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        sums = np.add.reduceat(measures[order], firsts, axis=0)
        table = np.column_stack(
            [
                sorted_keys[firsts],
                sums[:, 0],
                sums[:, 1],
                np.minimum.reduceat(start[order], firsts),
                np.maximum.reduceat(start[order], firsts),
                np.minimum.reduceat(end[order], firsts),
                np.maximum.reduceat(end[order], firsts),
                sums[:, 2:],
            ]
        )
        blobs.append((dim, ordinal, pack(table)))
    conn.executemany("INSERT INTO metric_rollup_day (dim, day, data) VALUES (?, ?, ?)", blobs)


def stale_days(conn: sqlite3.Connection, zone: tzinfo) -> int:
    """Dirty UTC days still to rebuild for ``zone``; -1 when the rollups were built for another zone (or never)."""
    if _rollup_zone(conn) != zone_name(zone):
        return -1
    return int(conn.execute("SELECT count(*) FROM metric_rollup_dirty").fetchone()[0])


def _local_days_of_utc_day(utc_day: int, zone: tzinfo) -> Iterator[date]:
    """The local calendar days that UTC day number ``utc_day`` overlaps (one, two or three)."""
    first = local_date(utc_day * US_PER_DAY, zone)
    last = local_date((utc_day + 1) * US_PER_DAY - 1, zone)
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


# --- reading ------------------------------------------------------------------------------------------


class SQLiteMetricReader:
    """The engine's ``MetricReader`` over one read transaction of a reader connection."""

    def __init__(self, conn: sqlite3.Connection, zone: tzinfo):
        self._conn = conn
        self._zone = zone
        self._rollups_current = _rollup_zone(conn) == zone_name(zone)

    def rollup_windows(self) -> frozenset[int]:
        return ROLLUP_WINDOWS_US if self._rollups_current else frozenset()

    def rollup_days(self, dimension: str, first_day: date, last_day: date) -> RollupDays | None:
        if not self._rollups_current or dimension not in (EVERYONE, *DIMENSIONS):
            return None
        first, last = first_day.toordinal(), last_day.toordinal()
        tables: list[Table] = []
        day_numbers: list[int] = []
        sizes: list[int] = []
        for day, data in self._conn.execute(
            "SELECT day, data FROM metric_rollup_day WHERE dim = ? AND day BETWEEN ? AND ?", (dimension, first, last)
        ):
            table = unpack(data)
            tables.append(table)
            day_numbers.append(day)
            sizes.append(len(table))
        (values_json,) = self._conn.execute(
            "SELECT json_group_object(id, value) FROM metric_rollup_value WHERE dim = ?", (dimension,)
        ).fetchone()
        by_number = json.loads(values_json)
        return RollupDays(
            values=[by_number.get(str(number), NO_VALUE) for number in range(len(by_number))],  # numbers are dense
            days=np.repeat(np.asarray(day_numbers, dtype=np.int64), sizes),
            table=np.concatenate(tables) if tables else np.zeros((0, len(ROLLUP_COLUMNS)), dtype=np.int64),
            stale=self._stale_days(first_day, last_day),
        )

    def _stale_days(self, first_day: date, last_day: date) -> set[date]:
        """Local days in first..last overlapping a dirty UTC day."""
        lo = local_midnight_us(first_day, self._zone) // US_PER_DAY
        hi = local_midnight_us(last_day + timedelta(days=1), self._zone) // US_PER_DAY
        stale: set[date] = set()
        for (utc_day,) in self._conn.execute(
            "SELECT utc_day FROM metric_rollup_dirty WHERE utc_day BETWEEN ? AND ?", (lo, hi)
        ):
            stale.update(d for d in _local_days_of_utc_day(int(utc_day), self._zone) if first_day <= d <= last_day)
        return stale

    def row_counts(self, spec: RowSpec) -> dict[str | None, Counts]:
        no_repeat = NO_REPEAT.format(w=":w")
        success = no_repeat if spec.metric == "acr" else f"{TIER1_SUCCESS} AND {no_repeat}"
        where = f"{CANDIDATE} AND started_us >= :lo AND started_us < :hi"
        params: dict[str, object] = {"w": spec.window_us, "as_of": spec.as_of_us}
        if spec.metric == "tier1":
            where += " AND tier = 1"
        for index, (dimension, value) in enumerate(spec.filters):
            if dimension not in DIMENSIONS:
                raise ValueError(f"unknown dimension {dimension!r}")
            where += f" AND {dimension} = :f{index}"
            params[f"f{index}"] = value
        if spec.among is not None:
            dimension, values = spec.among
            if dimension not in DIMENSIONS:
                raise ValueError(f"unknown dimension {dimension!r}")
            where += f" AND {dimension} IN ({', '.join(f':a{i}' for i in range(len(values)))})"
            params.update({f"a{i}": value for i, value in enumerate(values)})
        if spec.group is not None and spec.group not in DIMENSIONS:
            raise ValueError(f"unknown dimension {spec.group!r}")
        key = spec.group or "''"
        sql = f"""SELECT {key},
                sum(end_us + :w <= :as_of),
                sum(end_us + :w <= :as_of AND {success}),
                sum(end_us + :w > :as_of)
            FROM contacts WHERE {where} GROUP BY 1"""
        result: dict[str | None, Counts] = {}
        for span in spec.spans:
            params["lo"], params["hi"] = span.since_us, span.until_us
            for group_key, matured, resolved, pending in self._conn.execute(sql, params):
                label = span.day.isoformat() if span.day is not None else group_key
                counts = Counts(int(matured), int(resolved), int(pending))
                before = result.get(label)
                result[label] = counts if before is None else before + counts
        return result

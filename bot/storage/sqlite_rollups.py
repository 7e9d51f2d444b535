"""The SQL of the exact metric rollups of a SQLite store (what they are: ``bot.storage.rollups``).

They are invalidated, never maintained inline: a write marks the UTC days it may have changed in
``metric_rollup_dirty`` (``mark_dirty``: one cheap statement at the end of the write transaction, and triggers
for the old day of an updated or deleted contact), raising the mark's version each time. A refresh rolls dirty
days up (``build``: the slow part, outside the write lock, so webhook writes go on), then a short write
transaction installs the result (``install``), clearing only the marks whose version is still the one the build
read: a day written meanwhile stays dirty, and a later refresh rolls it up again. The build reads in short
snapshots and works the rows out after each ends: an open snapshot keeps the write-ahead log from being started
over. The tables are created by ``sqlite_migrations``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import tzinfo

from bot.storage.rollups import DAY_ROW_COLUMNS, Blob, ValueIds, build_day, day_bounds, local_days_of, zone_name
from bot.storage.sqlite_transactions import read_snapshot
from metrics.timeutil import US_PER_DAY

# (A subquery, so that ON CONFLICT cannot be read as a join constraint of the scope.)
_MARK_DIRTY_SQL = f"""
INSERT INTO metric_rollup_dirty (utc_day)
SELECT utc_day FROM (SELECT DISTINCT c.started_us / {US_PER_DAY} AS utc_day FROM {{scope}}) WHERE true
ON CONFLICT (utc_day) DO UPDATE SET version = version + 1
"""


def mark_dirty(conn: sqlite3.Connection, scope: str) -> None:
    """End-of-write hook: every day holding a contact the write may have changed must be rolled up again.

    ``scope`` is the SQL source of those contacts (as ``c``) that the writer has just worked out (its own
    fields or its next_repeat_us may have changed); the customer index covers started_us, so this reads
    only what the write just read.
    """
    conn.execute(_MARK_DIRTY_SQL.format(scope=scope))


# --- refreshing ---------------------------------------------------------------------------------------


def _rollup_zone(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM metric_rollup_state WHERE name = 'zone'").fetchone()
    return None if row is None else str(row[0])


def _generation(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM metric_rollup_state WHERE name = 'generation'").fetchone()
    return 0 if row is None else int(row[0])


_DAY_ROWS_SQL = f"SELECT {DAY_ROW_COLUMNS} FROM metric_contacts WHERE started_us >= ? AND started_us < ?"


@dataclass
class BuiltRollups:
    """The rollups of some dirty UTC days, worked out from what ``build`` read, for ``install``."""

    generation: int  # of the rollups the build saw first (every install raises it)
    marks: list[tuple[int, int]]  # (utc_day, version) of the dirty marks this covers, as the build saw them first
    # The local days rolled up (all their rows): (ordinal, first and last UTC day they overlap).
    local_days: list[tuple[int, int, int]] = field(default_factory=list)
    day_blobs: list[Blob] = field(default_factory=list)
    hour_blobs: list[Blob] = field(default_factory=list)
    new_values: list[tuple[str, str, int]] = field(default_factory=list)  # value numbers this build assigned


def build(
    conn: sqlite3.Connection, zone: tzinfo, max_days: int, before_utc_day: int | None = None
) -> BuiltRollups | None:
    """Roll up the most recent dirty UTC days (at most ``max_days``, all before ``before_utc_day`` if given): every
    local day they overlap, whole. ``conn`` is a reader outside any transaction; nothing is written. None when the
    rollups were built for another time zone (``reset_zone`` comes first).

    The marks, the generation and the value numbers are read in one snapshot, then each local day's rows in a
    snapshot of their own, fetched whole and worked out after it ends. A snapshot held through the whole build
    (1-4 s a batch on 10M contacts under webhook load) kept the log from being started over: it grew to the
    writer's cap, and the webhook batch that reached it waited 0.5-0.75 s for the checkpoint. Exact all the same:
    the marks are read first, so a write before a day's rows were read has raised the version of its mark (or
    marked a day that was clean), and ``install`` leaves that day dirty."""
    with read_snapshot(conn):
        if _rollup_zone(conn) != zone_name(zone):
            return None
        built = BuiltRollups(
            _generation(conn),
            [
                (int(utc_day), int(version))
                for utc_day, version in conn.execute(
                    "SELECT utc_day, version FROM metric_rollup_dirty WHERE utc_day < ? ORDER BY utc_day DESC LIMIT ?",
                    (2**62 if before_utc_day is None else before_utc_day, max_days),
                )
            ],
        )
        known_values = conn.execute("SELECT dim, value, id FROM metric_rollup_value").fetchall()
    ids = ValueIds(known_values, lambda dim, value, number: built.new_values.append((dim, value, number)))
    for day in local_days_of([utc_day for utc_day, _ in built.marks], zone):
        lo, hi = day_bounds(day, zone)
        with read_snapshot(conn):
            rows = conn.execute(_DAY_ROWS_SQL, (lo, hi)).fetchall()
        day_blobs, hour_blobs = build_day(rows, day, lo, ids.get)
        built.local_days.append((day.toordinal(), lo // US_PER_DAY, (hi - 1) // US_PER_DAY))
        built.day_blobs += day_blobs
        built.hour_blobs += hour_blobs
    return built


def install(conn: sqlite3.Connection, built: BuiltRollups) -> int | None:
    """Store what ``build`` worked out; inside a write transaction of ``conn``. Returns how many UTC days it rolled
    up (marks cleared), or None, writing nothing, when another refresh has installed rollups since the build read
    the generation (its value numbers may clash with these).

    A mark is cleared only if its version is still the one the build read; a local day's tables are replaced
    only if every UTC day it overlaps is then clean: none was written since the build read the marks (a write
    marks, and only a refresh clears), so they are exact. A day left dirty is counted from contacts, whatever its tables hold,
    until a later refresh rolls it up again. When every day was written meanwhile nothing is written at all
    (the rollups' generation stays, and with it every decoded copy of them)."""
    if _generation(conn) != built.generation:
        return None
    cleared = [
        mark
        for mark in built.marks
        if conn.execute("SELECT 1 FROM metric_rollup_dirty WHERE utc_day = ? AND version = ?", mark).fetchone()
    ]
    if not cleared:
        return 0
    _bump_generation(conn)
    conn.executemany("INSERT INTO metric_rollup_value (dim, value, id) VALUES (?, ?, ?)", built.new_values)
    conn.executemany("DELETE FROM metric_rollup_dirty WHERE utc_day = ? AND version = ?", cleared)
    still_dirty = [
        int(row[0])
        for row in conn.execute(
            "SELECT utc_day FROM metric_rollup_dirty WHERE utc_day BETWEEN ? AND ?",
            (min(first for _, first, _ in built.local_days), max(last for _, _, last in built.local_days)),
        )
    ]
    exact = {
        ordinal
        for ordinal, first, last in built.local_days
        if not any(first <= utc_day <= last for utc_day in still_dirty)
    }
    conn.executemany("DELETE FROM metric_rollup_day WHERE day = ?", [(ordinal,) for ordinal in exact])
    conn.executemany("DELETE FROM metric_rollup_hour WHERE day = ?", [(ordinal,) for ordinal in exact])
    for table, blobs in (("metric_rollup_day", built.day_blobs), ("metric_rollup_hour", built.hour_blobs)):
        conn.executemany(
            f"INSERT INTO {table} (dim, day, data) VALUES (?, ?, ?)", [blob for blob in blobs if blob[1] in exact]
        )
    return len(cleared)


def reset_zone(conn: sqlite3.Connection, zone: tzinfo) -> None:
    """Rollups built for another zone (or never): drop them and mark every day dirty; inside a write transaction."""
    name = zone_name(zone)
    if _rollup_zone(conn) == name:
        return  # (another refresh did it meanwhile)
    _bump_generation(conn)
    conn.execute("DELETE FROM metric_rollup_day")
    conn.execute("DELETE FROM metric_rollup_hour")
    conn.execute(
        f"INSERT OR IGNORE INTO metric_rollup_dirty (utc_day) "
        f"SELECT DISTINCT started_us / {US_PER_DAY} FROM metric_contacts"
    )
    conn.execute("INSERT OR REPLACE INTO metric_rollup_state (name, value) VALUES ('zone', ?)", (name,))


def _bump_generation(conn: sqlite3.Connection) -> None:
    """Mark that the rollup tables change (in the same transaction): decoded copies of them are now old."""
    conn.execute(
        "INSERT INTO metric_rollup_state (name, value) VALUES ('generation', '1') "
        "ON CONFLICT (name) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def stale_days(conn: sqlite3.Connection, zone: tzinfo) -> int:
    """Dirty UTC days still to rebuild for ``zone``; -1 when the rollups were built for another zone (or never)."""
    if _rollup_zone(conn) != zone_name(zone):
        return -1
    return int(conn.execute("SELECT count(*) FROM metric_rollup_dirty").fetchone()[0])


class SQLiteRollupTables:
    """The four reads ``rollups.RollupReader`` needs, in this backend's SQL (mixed into its metric reader)."""

    _conn: sqlite3.Connection

    def _state(self) -> tuple[dict[str, str], Sequence[int]]:
        state = dict(self._conn.execute("SELECT name, value FROM metric_rollup_state").fetchall())
        return state, [int(row[0]) for row in self._conn.execute("SELECT utc_day FROM metric_rollup_dirty")]

    def _day_blobs(self, dimension: str, first: int, last: int) -> Sequence[tuple[int, bytes]]:
        return self._conn.execute(
            "SELECT day, data FROM metric_rollup_day WHERE dim = ? AND day BETWEEN ? AND ?", (dimension, first, last)
        ).fetchall()

    def _hour_blobs(self, dimension: str, days: Sequence[int]) -> Sequence[tuple[int, bytes]]:
        placeholders = ", ".join("?" * len(days))
        return self._conn.execute(
            f"SELECT day, data FROM metric_rollup_hour WHERE dim = ? AND day IN ({placeholders})", (dimension, *days)
        ).fetchall()

    def _value_numbers(self, dimension: str) -> Sequence[tuple[int, str]]:
        return self._conn.execute("SELECT id, value FROM metric_rollup_value WHERE dim = ?", (dimension,)).fetchall()

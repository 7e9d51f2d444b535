"""The SQL of the exact metric rollups of a SQLite store (what they are: ``bot.storage.rollups``).

They are invalidated, never maintained inline: a write marks the UTC days it may have changed in
``metric_rollup_dirty`` (``mark_dirty``: one cheap statement at the end of the write transaction, and a trigger
for the old day of an updated contact); ``refresh`` rebuilds them. The tables are created by
``sqlite_migrations``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, tzinfo

from bot.storage.rollups import DAY_ROW_COLUMNS, ValueIds, build_day, day_bounds, local_days_of, zone_name
from metrics.timeutil import US_PER_DAY

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


def _rollup_zone(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM metric_rollup_state WHERE name = 'zone'").fetchone()
    return None if row is None else str(row[0])


_DAY_ROWS_SQL = f"SELECT {DAY_ROW_COLUMNS} FROM metric_contacts WHERE started_us >= ? AND started_us < ?"


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
    ids = ValueIds(
        conn.execute("SELECT dim, value, id FROM metric_rollup_value").fetchall(),
        lambda dim, value, number: conn.execute(
            "INSERT INTO metric_rollup_value (dim, value, id) VALUES (?, ?, ?)", (dim, value, number)
        ),
    )
    for day in local_days_of(utc_days, zone):
        _rebuild_day(conn, day, zone, ids)
    conn.executemany("DELETE FROM metric_rollup_dirty WHERE utc_day = ?", [(d,) for d in utc_days])
    return len(utc_days)


def _bump_generation(conn: sqlite3.Connection) -> None:
    """Mark that the rollup tables change (in the same transaction): decoded copies of them are now old."""
    conn.execute(
        "INSERT INTO metric_rollup_state (name, value) VALUES ('generation', '1') "
        "ON CONFLICT (name) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def _rebuild_day(conn: sqlite3.Connection, day: date, zone: tzinfo, ids: ValueIds) -> None:
    """Roll up one local day from its candidates (the numbers: ``rollups.build_day``)."""
    lo, hi = day_bounds(day, zone)
    ordinal = day.toordinal()
    conn.execute("DELETE FROM metric_rollup_day WHERE day = ?", (ordinal,))
    conn.execute("DELETE FROM metric_rollup_hour WHERE day = ?", (ordinal,))
    day_blobs, hour_blobs = build_day(conn.execute(_DAY_ROWS_SQL, (lo, hi)).fetchall(), day, lo, ids.get)
    conn.executemany("INSERT INTO metric_rollup_day (dim, day, data) VALUES (?, ?, ?)", day_blobs)
    conn.executemany("INSERT INTO metric_rollup_hour (dim, day, data) VALUES (?, ?, ?)", hour_blobs)


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

"""The SQL of the exact metric rollups of a PostgreSQL store (what they are: ``bot.storage.rollups``).

Exact across processes, by the store's derive lock: the candidates (``metric_contacts``) and the marks of the
UTC days a write changed (``metric_rollup_dirty``) are only ever written under it, in the write's transaction;
a refresh rebuilds days and removes their marks under it too, in one transaction. So in any snapshot a day is
either marked or rolled up from exactly the candidates that snapshot holds, and a reader (one REPEATABLE READ
snapshot) never mixes them up. Every refresh bumps the rollups' generation in its transaction, which keys the
decoded tables each process keeps (``RollupCache``). The tables are created by ``postgres_migrations``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, tzinfo
from typing import Any, Final

import psycopg

from bot.storage.rollups import DAY_ROW_COLUMNS, ValueIds, build_day, day_bounds, local_days_of, zone_name
from metrics.timeutil import US_PER_DAY


def utc_day(column: str) -> str:
    """SQL for the UTC day number of an instant column (floor division: days before 1970 too)."""
    return f"({column} / {US_PER_DAY} - (mod({column}, {US_PER_DAY}) < 0)::int)"  # mod, not %: safe with parameters


def mark_dirty(source: str) -> str:
    """SQL marking the UTC day of every ``started_us`` that ``source`` (a table, or a query in parentheses with
    an alias) yields; run it under the derive lock, in the transaction that changed those candidates."""
    return (
        f"INSERT INTO metric_rollup_dirty (utc_day) SELECT DISTINCT {utc_day('started_us')} FROM {source} "
        "ON CONFLICT (utc_day) DO NOTHING"
    )


_STATE: Final = "SELECT name, value FROM metric_rollup_state"
_STATE_AND_DIRTY: Final = (  # one round trip: a reader's first read
    "SELECT (SELECT coalesce(jsonb_object_agg(name, value), '{}') FROM metric_rollup_state), "
    "ARRAY(SELECT utc_day FROM metric_rollup_dirty)"
)
_BUMP_GENERATION: Final = (
    "INSERT INTO metric_rollup_state (name, value) VALUES ('generation', '1') "
    "ON CONFLICT (name) DO UPDATE SET value = (metric_rollup_state.value::bigint + 1)::text"
)
_DAY_ROWS: Final = f"SELECT {DAY_ROW_COLUMNS} FROM metric_contacts WHERE started_us >= %s AND started_us < %s"


def stale_days(conn: psycopg.Connection[Any], zone: tzinfo) -> int:
    """Dirty UTC days still to rebuild for ``zone``; -1 when the rollups were built for another zone (or never)."""
    state = dict(conn.execute(_STATE).fetchall())
    if state.get("zone") != zone_name(zone):
        return -1
    row = conn.execute("SELECT count(*) FROM metric_rollup_dirty").fetchone()
    return int(row[0]) if row else 0


def refresh(conn: psycopg.Connection[Any], zone: tzinfo, max_days: int) -> int:
    """Rebuild the rollups of up to ``max_days`` dirty UTC days (most recent first); returns how many were cleaned.
    Starts over when the rollups were built for another time zone.

    Must run inside a transaction of ``conn`` that holds the store's derive lock.
    """
    name = zone_name(zone)
    if dict(conn.execute(_STATE).fetchall()).get("zone") != name:
        conn.execute(_BUMP_GENERATION)
        conn.execute("DELETE FROM metric_rollup_day")
        conn.execute("DELETE FROM metric_rollup_hour")
        conn.execute(mark_dirty("metric_contacts"))
        conn.execute(
            "INSERT INTO metric_rollup_state (name, value) VALUES ('zone', %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name,),
        )
    utc_days = [
        int(row[0])
        for row in conn.execute("SELECT utc_day FROM metric_rollup_dirty ORDER BY utc_day DESC LIMIT %s", (max_days,))
    ]
    if not utc_days:
        return 0
    conn.execute(_BUMP_GENERATION)
    ids = ValueIds(
        conn.execute("SELECT dim, value, id FROM metric_rollup_value").fetchall(),
        lambda dim, value, number: conn.execute(
            "INSERT INTO metric_rollup_value (dim, value, id) VALUES (%s, %s, %s)", (dim, value, number)
        ),
    )
    for day in local_days_of(utc_days, zone):
        _rebuild_day(conn, day, zone, ids)
    conn.execute("DELETE FROM metric_rollup_dirty WHERE utc_day = ANY(%s)", (utc_days,))
    return len(utc_days)


def _rebuild_day(conn: psycopg.Connection[Any], day: date, zone: tzinfo, ids: ValueIds) -> None:
    lo, hi = day_bounds(day, zone)
    ordinal = day.toordinal()
    conn.execute("DELETE FROM metric_rollup_day WHERE day = %s", (ordinal,))
    conn.execute("DELETE FROM metric_rollup_hour WHERE day = %s", (ordinal,))
    rows = conn.execute(_DAY_ROWS, (lo, hi), binary=True).fetchall()
    day_blobs, hour_blobs = build_day(rows, day, lo, ids.get)
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO metric_rollup_day (dim, day, data) VALUES (%s, %s, %s)", day_blobs)
        cursor.executemany("INSERT INTO metric_rollup_hour (dim, day, data) VALUES (%s, %s, %s)", hour_blobs)


class PostgresRollupTables:
    """The four reads ``rollups.RollupReader`` needs, in this backend's SQL (mixed into its metric reader)."""

    _conn: psycopg.Connection[Any]

    def _state(self) -> tuple[dict[str, str], Sequence[int]]:
        row = self._conn.execute(_STATE_AND_DIRTY).fetchone()
        assert row is not None
        return row[0], row[1]

    def _day_blobs(self, dimension: str, first: int, last: int) -> Sequence[tuple[int, bytes]]:
        return self._conn.execute(
            "SELECT day, data FROM metric_rollup_day WHERE dim = %s AND day BETWEEN %s AND %s",
            (dimension, first, last),
            binary=True,
        ).fetchall()

    def _hour_blobs(self, dimension: str, days: Sequence[int]) -> Sequence[tuple[int, bytes]]:
        return self._conn.execute(
            "SELECT day, data FROM metric_rollup_hour WHERE dim = %s AND day = ANY(%s)",
            (dimension, list(days)),
            binary=True,
        ).fetchall()

    def _value_numbers(self, dimension: str) -> Sequence[tuple[int, str]]:
        return self._conn.execute("SELECT id, value FROM metric_rollup_value WHERE dim = %s", (dimension,)).fetchall()

"""The SQL of the exact metric rollups of a PostgreSQL store (what they are: ``bot.storage.rollups``).

Exact across processes, by the store's derive lock: the candidates (``metric_contacts``) and the marks of the
UTC days a write changed (``metric_rollup_dirty``) are only ever committed under it, in the write's transaction
(a write of new contacts adds their candidates just before it takes the lock; no snapshot sees them before that
commit).
A refresh builds days from one snapshot without any lock (``build``), then stores them and removes their marks
under the derive lock in one short transaction (``store_built``), only the marks of the days no write marked
again since that snapshot: each mark is written anew by every write (its row version, ``xmin``, is the last
marking transaction's), and only a refresh removes marks, one refresh at a time (``REFRESH_LOCK``). So in any
snapshot a day is either marked or rolled up from exactly the candidates that snapshot holds, and a reader (one
REPEATABLE READ snapshot) never mixes them up. Every refresh bumps the rollups' generation in its transaction,
which keys the decoded tables each process keeps (``RollupCache``). The tables are created by
``postgres_migrations``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, Final

import psycopg

from bot.storage.rollups import DAY_ROW_COLUMNS, ValueIds, build_day, day_bounds, local_days_of, zone_name
from metrics.timeutil import US_PER_DAY


def utc_day(column: str) -> str:
    """SQL for the UTC day number of an instant column (floor division: days before 1970 too)."""
    return f"({column} / {US_PER_DAY} - (mod({column}, {US_PER_DAY}) < 0)::int)"  # mod, not %: safe with parameters


def mark_dirty(source: str) -> str:
    """SQL marking the UTC day of every ``started_us`` that ``source`` (a table, or a query in parentheses with
    an alias) yields; run it under the derive lock, in the transaction that changed those candidates. A mark
    already there is written again (a new row version: a refresh built from an earlier snapshot keeps it)."""
    return (
        f"INSERT INTO metric_rollup_dirty (utc_day) SELECT DISTINCT {utc_day('started_us')} FROM {source} "
        "ON CONFLICT (utc_day) DO UPDATE SET utc_day = excluded.utc_day"
    )


# One refresh at a time across processes, for its build and its store (a session lock: two transactions).
_REFRESH_LOCK_KEY: Final = "hashtext('acr-bot rollup refresh'), hashtext(current_schema())"
REFRESH_LOCK: Final = f"SELECT pg_advisory_lock({_REFRESH_LOCK_KEY})"
TRY_REFRESH_LOCK: Final = f"SELECT pg_try_advisory_lock({_REFRESH_LOCK_KEY})"
REFRESH_UNLOCK: Final = f"SELECT pg_advisory_unlock({_REFRESH_LOCK_KEY})"


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


def zone_is_current(conn: psycopg.Connection[Any], zone: tzinfo) -> bool:
    """Whether the rollups were built for ``zone`` (else ``reset_for_zone`` first)."""
    return dict(conn.execute(_STATE).fetchall()).get("zone") == zone_name(zone)


def reset_for_zone(conn: psycopg.Connection[Any], zone: tzinfo) -> None:
    """Start the rollups over for ``zone``: every day with a candidate marked. Under the derive lock."""
    if zone_is_current(conn, zone):
        return
    conn.execute(_BUMP_GENERATION)
    conn.execute("DELETE FROM metric_rollup_day")
    conn.execute("DELETE FROM metric_rollup_hour")
    conn.execute(mark_dirty("metric_contacts"))
    conn.execute(
        "INSERT INTO metric_rollup_state (name, value) VALUES ('zone', %s) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (zone_name(zone),),
    )


@dataclass
class BuiltDays:
    """Rollups rebuilt from one snapshot (``build``), for ``store_built``."""

    marks: dict[int, str] = field(default_factory=dict)  # each rebuilt UTC day's mark (its row version) then
    blobs: list[tuple[int, list[Any], list[Any]]] = field(default_factory=list)  # (local day, day rows, hour rows)
    new_values: list[tuple[str, str, int]] = field(default_factory=list)  # dimension values numbered meanwhile


def build(conn: psycopg.Connection[Any], zone: tzinfo, max_days: int, skip: Collection[int] = ()) -> BuiltDays:
    """Rebuild the rollups of up to ``max_days`` marked UTC days (most recent first, but those in ``skip``), in
    memory. Run it in one REPEATABLE READ snapshot, holding ``REFRESH_LOCK`` (and no other lock), for a zone
    the rollups are built for (``zone_is_current``)."""
    built = BuiltDays()
    built.marks = {
        int(day): str(version)
        for day, version in conn.execute(
            "SELECT utc_day, xmin::text FROM metric_rollup_dirty WHERE utc_day <> ALL(%s) "
            "ORDER BY utc_day DESC LIMIT %s",
            (list(skip), max_days),
        )
    }
    if not built.marks:
        return built
    ids = ValueIds(
        conn.execute("SELECT dim, value, id FROM metric_rollup_value").fetchall(),
        lambda dim, value, number: built.new_values.append((dim, value, number)),
    )
    for day in local_days_of(list(built.marks), zone):
        lo, hi = day_bounds(day, zone)
        rows = conn.execute(_DAY_ROWS, (lo, hi), binary=True).fetchall()
        built.blobs.append((day.toordinal(), *build_day(rows, day, lo, ids.get)))
    return built


def store_built(conn: psycopg.Connection[Any], built: BuiltDays) -> int:
    """Store what ``build`` made, and remove the marks of its UTC days that no write marked again since its
    snapshot; returns how many it removed. Under the derive lock and ``REFRESH_LOCK``.

    Every rebuilt local day is stored: each UTC day it overlaps either did not change since the snapshot (no
    mark then and none now, or the same mark) or is still marked, so readers count that local day from the
    candidates. When every day was marked again meanwhile nothing is written at all: no reader would use what
    was built, and the rollups' generation stays, with every process's decoded copies kept under it (a
    question's refresh of today, while webhooks keep writing today, is that case)."""
    current = dict(
        conn.execute(
            "SELECT utc_day, xmin::text FROM metric_rollup_dirty WHERE utc_day = ANY(%s)", (list(built.marks),)
        ).fetchall()
    )
    unchanged = [day for day, version in built.marks.items() if current.get(day) == version]
    if not unchanged:
        return 0
    conn.execute(_BUMP_GENERATION)
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO metric_rollup_value (dim, value, id) VALUES (%s, %s, %s)", built.new_values)
        for ordinal, day_blobs, hour_blobs in built.blobs:
            conn.execute("DELETE FROM metric_rollup_day WHERE day = %s", (ordinal,))
            conn.execute("DELETE FROM metric_rollup_hour WHERE day = %s", (ordinal,))
            cursor.executemany("INSERT INTO metric_rollup_day (dim, day, data) VALUES (%s, %s, %s)", day_blobs)
            cursor.executemany("INSERT INTO metric_rollup_hour (dim, day, data) VALUES (%s, %s, %s)", hour_blobs)
    conn.execute("DELETE FROM metric_rollup_dirty WHERE utc_day = ANY(%s)", (unchanged,))
    return len(unchanged)


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

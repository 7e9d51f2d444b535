"""SQL for the metrics: counting candidates (``metric_contacts``), and the exact daily rollups.

The rules are those of ``metrics.definitions``, stated over the columns of ``metric_contacts``, which holds
exactly the candidates (contacts with direction = 'inbound' AND agent IS NOT NULL):
  candidate      since <= started_us < until (+ filters)
  repeat in W    next_repeat_us IS NOT NULL AND next_repeat_us <= end_us + W
  matured        end_us + W <= as_of
  tier-1 success tier = 1 AND escalated = 0 AND resolved IS NOT 0 AND no repeat in W

Rollups (``metric_rollup_day`` and ``metric_rollup_hour``: one packed table of day buckets, and one of hour
buckets, per dimension and local day, in the zone they were built for; their columns and how they answer
are in ``metrics/rollup.py``). They are invalidated, never
maintained inline: a write marks the UTC days it may have changed in ``metric_rollup_dirty`` (one cheap
statement at the end of the write transaction, and a trigger for the old day of an updated contact); a local
day overlapping a dirty UTC day is counted from contacts until ``refresh`` rebuilds it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from datetime import date, timedelta, tzinfo

import numpy as np
import numpy.typing as npt
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

DIMENSIONS: tuple[Dimension, ...] = ("agent", "team", "queue", "channel")
_CANDIDATE_OF = "{row}direction = 'inbound' AND {row}agent IS NOT NULL"  # the contacts the metrics count
CANDIDATE = _CANDIDATE_OF.format(row="")
NO_REPEAT = "(next_repeat_us IS NULL OR next_repeat_us > end_us + {w})"
TIER1_SUCCESS = "(tier = 1 AND escalated = 0 AND resolved IS NOT 0)"

# --- schema (used by the migration) -----------------------------------------------------------------

SCHEMA = [  # as first migrated; the candidate indexes are replaced by METRIC_CONTACTS_SCHEMA
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

# The candidates in a table of their own (migration ``m_metric_contacts``; it replaces the two candidate
# indexes of SCHEMA and the next_repeat_us column of contacts). Why a table: a write changes the next repeat
# of each touched customer's previous contact, and in the wide contacts row that cost one random table page
# per record (measured: 60% of the pages a webhook commit wrote, and an UPDATE of every row of an import).
# Here it changes one narrow row, in the same pages a covering index would have had to change anyway.
# Clustered by start, so a count over a time range reads only consecutive pages.
METRIC_CONTACTS_COLUMNS = (
    "started_us", "pk", "end_us", "next_repeat_us", "tier", "escalated", "resolved", "agent", "team", "queue",
    "channel",
)  # fmt: skip
METRIC_CONTACTS_SCHEMA = [
    """CREATE TABLE metric_contacts (
        started_us INTEGER NOT NULL,
        pk INTEGER NOT NULL,  -- contacts.pk
        end_us INTEGER NOT NULL,
        next_repeat_us INTEGER,  -- derived: the start of the customer's first repeatable contact after this one
        tier INTEGER NOT NULL,
        escalated INTEGER NOT NULL,
        resolved INTEGER,
        agent TEXT NOT NULL,
        team TEXT,
        queue TEXT,
        channel TEXT NOT NULL,
        PRIMARY KEY (started_us, pk)
    ) WITHOUT ROWID""",
    f"""INSERT INTO metric_contacts ({", ".join(METRIC_CONTACTS_COLUMNS)})
        SELECT {", ".join(METRIC_CONTACTS_COLUMNS)} FROM contacts WHERE {CANDIDATE} ORDER BY started_us, pk""",
    # The scope asked most (one agent) reads only that agent's rows.
    "CREATE INDEX metric_contacts_agent ON metric_contacts (agent, started_us)",
    "DROP INDEX contacts_candidates_time",
    "DROP INDEX contacts_candidates_agent",
    "ALTER TABLE contacts DROP COLUMN next_repeat_us",
    # An update or delete of a contact moves or removes its candidate row; the writer then works out the
    # next repeats of the customers it touched (an updated candidate's own included: it starts as NULL here).
    f"""CREATE TRIGGER contacts_metric_update
        AFTER UPDATE OF customer_id, agent, team, queue, channel, direction, tier, escalated, resolved,
            parent_id, started_us, ended_us ON contacts
        BEGIN
            DELETE FROM metric_contacts WHERE started_us = old.started_us AND pk = old.pk;
            INSERT INTO metric_contacts ({", ".join(METRIC_CONTACTS_COLUMNS)})
            SELECT new.started_us, new.pk, new.end_us, NULL, new.tier, new.escalated, new.resolved, new.agent,
                new.team, new.queue, new.channel
            WHERE {_CANDIDATE_OF.format(row="new.")};
        END""",
    """CREATE TRIGGER contacts_metric_delete AFTER DELETE ON contacts
        BEGIN
            DELETE FROM metric_contacts WHERE started_us = old.started_us AND pk = old.pk;
        END""",
]

HOUR_SCHEMA = [
    # One packed table of hour buckets per (dimension, local day): answers the days whose day buckets cannot.
    "CREATE TABLE metric_rollup_hour (dim TEXT NOT NULL, day INTEGER NOT NULL, data BLOB NOT NULL, "
    "PRIMARY KEY (dim, day)) WITHOUT ROWID",
    # Forget which zone the day rollups were built for: the next refresh rebuilds every day, hours included.
    "DELETE FROM metric_rollup_state WHERE name = 'zone'",
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


_DAY_ROWS_SQL = """
SELECT agent, team, queue, channel, tier, escalated, resolved, started_us, end_us, next_repeat_us
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
        local.update(_local_days_of_utc_day(utc_day, zone))
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


class RollupCache:
    """Decoded rollup tables of recent questions, kept by the store for its process: a question about the
    same days (the next one, usually) reuses them instead of reading and unpacking megabytes of blobs.

    Exact: entries are keyed by the rollups' generation, which every refresh bumps in its own transaction,
    so a snapshot only ever finds tables decoded from what it would read itself. Stale days are not part of
    an entry (they change with every write) but read by each question. Least recently used entries go first.
    """

    def __init__(self, max_bytes: int = 64 * 2**20):
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[tuple[object, ...], RollupDays] = OrderedDict()
        self._values: dict[tuple[object, ...], list[str]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> RollupDays | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def get_values(self, key: tuple[object, ...]) -> list[str] | None:
        with self._lock:
            return self._values.get(key)

    def put_values(self, key: tuple[object, ...], values: list[str]) -> None:
        with self._lock:
            if len(self._values) >= 64:  # a handful of dimensions per generation: old generations go
                self._values.clear()
            self._values[key] = values

    def put(self, key: tuple[object, ...], entry: RollupDays) -> None:
        size = _size(entry)
        if size > self._max_bytes:
            return
        for array in (entry.days, entry.table, entry.units):
            if array is not None:
                array.setflags(write=False)  # shared by every question that finds it
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self._max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= _size(old)


def _size(entry: RollupDays) -> int:
    return sum(array.nbytes for array in (entry.days, entry.table, entry.units) if array is not None)


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
    agent, team, queue, channel, tier, escalated, resolved, started, ended, next_repeat = zip(*rows, strict=True)
    start = np.array(started, dtype=np.int64)
    end = np.array(ended, dtype=np.int64)
    slot = (start - lo) // US_PER_HOUR
    following = np.array([_NO_NEXT_REPEAT if v is None else v for v in next_repeat], dtype=np.int64)
    tier1 = np.array(tier, dtype=np.int64) == 1
    # tier = 1 AND escalated = 0 AND resolved IS NOT 0 (a missing disposition is not a failure)
    tier1_base = tier1 & ~np.array(escalated, dtype=bool) & np.array([r != 0 for r in resolved], dtype=bool)
    no_repeat = [following > end + days * US_PER_DAY for days in ROLLUP_WINDOW_DAYS]
    measures = np.stack(
        [np.ones(len(rows), dtype=bool), tier1, *no_repeat, *(tier1_base & ok for ok in no_repeat)], axis=1
    ).astype(np.int64)
    day_blobs, hour_blobs = [], []
    for dim, column in ((EVERYONE, None), ("agent", agent), ("team", team), ("queue", queue), ("channel", channel)):
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
            stale.update(d for d in _local_days_of_utc_day(int(utc_day), self._zone) if first_day <= d <= last_day)
        return stale

    def row_counts(self, spec: RowSpec) -> dict[str | None, Counts]:
        no_repeat = NO_REPEAT.format(w=":w")
        success = no_repeat if spec.metric == "acr" else f"{TIER1_SUCCESS} AND {no_repeat}"
        where = "started_us >= :lo AND started_us < :hi"
        params: dict[str, object] = {"w": spec.window_us, "matured_by": spec.as_of_us - spec.window_us}
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

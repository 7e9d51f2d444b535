"""Answering metric questions in SQL: the ``MetricReader`` of the SQLite store, over ``metric_contacts``.

The rules are those of ``metrics.definitions``, stated over the columns of ``metric_contacts``, which holds
exactly the candidates (contacts with direction = 'inbound' AND agent IS NOT NULL):
  candidate      since <= started_us < until (+ filters)
  repeat in W    next_repeat_us IS NOT NULL AND next_repeat_us <= end_us + W
  matured        end_us + W <= as_of
  tier-1 success tier = 1 AND escalated = 0 AND resolved IS NOT 0 AND no repeat in W

Whole days are answered from the rollups (``bot.storage.rollups``; built by ``sqlite_rollups``, kept decoded by
``rollup_cache``); the rest is counted from ``metric_contacts``.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from datetime import tzinfo

from bot.storage.rollup_cache import RollupCache
from bot.storage.rollups import RollupReader
from bot.storage.sqlite_rollups import SQLiteRollupTables
from metrics.engine import RowSpec
from metrics.query import Counts, Dimension
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


class SQLiteMetricReader(SQLiteRollupTables, RollupReader):
    """The engine's ``MetricReader`` over one read transaction of a reader connection."""

    def __init__(self, conn: sqlite3.Connection, zone: tzinfo, cache: RollupCache | None = None):
        self._conn = conn
        super().__init__(zone, cache)

    def row_counts(self, specs: Sequence[RowSpec]) -> list[dict[str | None, Counts]]:
        return [self._row_counts(spec) for spec in specs]

    def _row_counts(self, spec: RowSpec) -> dict[str | None, Counts]:
        no_repeat = NO_REPEAT.format(w=":w")
        success = no_repeat if spec.metric == "acr" else f"{TIER1_SUCCESS} AND {no_repeat}"
        where = "started_us >= :lo AND started_us < :hi"
        params: dict[str, object] = {"w": spec.window_us, "matured_by": spec.as_of_us - spec.window_us}
        if spec.metric == "tier1":
            where += " AND tier = 1"
        for condition in filter_conditions(spec.filters, params):
            where += f" AND {condition}"
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
    where += filter_conditions(spec.filters, params)
    sums = ", ".join(f"coalesce(sum(next_repeat_us > end_us + :b{i}), 0)" for i in range(len(spec.bounds_us)))
    params.update({f"b{i}": bound for i, bound in enumerate(spec.bounds_us)})
    sql = f"SELECT {sums} FROM metric_contacts INDEXED BY metric_contacts_quick_return WHERE {' AND '.join(where)}"
    return [int(count) for count in conn.execute(sql, params).fetchone()]


def filter_conditions(filters: Sequence[tuple[str, str]], params: dict[str, object]) -> list[str]:
    """A question's filters as conditions on the candidates (``tier`` compared as an integer), their values added to
    ``params``; ValueError for an unknown dimension (never user text: the grammar checks names first)."""
    conditions = []
    for index, (dimension, value) in enumerate(filters):
        if dimension not in (*DIMENSIONS, "tier"):
            raise ValueError(f"unknown dimension {dimension!r}")
        conditions.append(f"{dimension} = :f{index}")
        params[f"f{index}"] = int(value) if dimension == "tier" else value
    return conditions

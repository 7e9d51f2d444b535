"""The metric engine's reader on PostgreSQL: exact SQL aggregates over the candidates (``metric_contacts``).

The rules are those of ``metrics.definitions`` (the same statement as ``sqlite_metrics``, in PostgreSQL's
boolean SQL):
  candidate      since <= started_us < until (+ filters)
  repeat in W    next_repeat_us IS NOT NULL AND next_repeat_us <= end_us + W
  matured        end_us + W <= as_of
  tier-1 success tier = 1 AND NOT escalated AND resolved IS NOT FALSE AND no repeat in W
Whole days are answered from the rollups (``bot.storage.rollups``; built by ``postgres_rollups``, kept decoded
by ``rollup_cache``), the rest is counted here by the server, all in one snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

import psycopg

from bot.storage.postgres_rollups import PostgresRollupTables
from bot.storage.rollup_cache import RollupCache
from bot.storage.rollups import DIMENSIONS, RollupReader
from metrics.engine import RowSpec, Span
from metrics.query import Counts
from metrics.windows import QUICK_RETURN_US, QuickReturns

NO_REPEAT = "(next_repeat_us IS NULL OR next_repeat_us > end_us + %(w)s)"
TIER1_SUCCESS = "(tier = 1 AND NOT escalated AND resolved IS NOT FALSE)"
MATURED = "end_us <= %(matured_by)s"
# A quick return (``metrics.windows``): a candidate with a repeat within a day of its end. The store keeps a copy of
# these candidates in metric_quick_returns (``bot.storage.postgres``), equal to the candidates matching this.
QUICK_RETURN = f"next_repeat_us <= end_us + {QUICK_RETURN_US}"


class PostgresMetricReader(PostgresRollupTables, RollupReader):
    """The engine's ``MetricReader`` over one REPEATABLE READ transaction."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], zone: tzinfo, cache: RollupCache | None = None):
        self._conn = conn
        super().__init__(zone, cache)

    def row_counts(self, specs: Sequence[RowSpec]) -> list[dict[str | None, Counts]]:
        """Every statement is sent before any result is read: in the pipeline ``metric_reader`` opens, a question's
        counting costs one round trip to the server, however many spans and values it has."""
        sent = [
            (spec, [(span, self._conn.execute(sql, params)) for span, sql, params in row_count_statements(spec)])
            for spec in specs
        ]
        return [_tally(spec, cursors) for spec, cursors in sent]


def row_count_statements(spec: RowSpec) -> list[tuple[Span, str, dict[str, object]]]:
    """One statement per span of ``spec``: its counts (matured, resolved, pending) by group value."""
    success = NO_REPEAT if spec.metric == "acr" else f"{TIER1_SUCCESS} AND {NO_REPEAT}"
    where = "started_us >= %(lo)s AND started_us < %(hi)s"
    params: dict[str, object] = {"w": spec.window_us, "matured_by": spec.as_of_us - spec.window_us}
    if spec.metric == "tier1":
        where += " AND tier = 1"
    for condition in filter_conditions(spec.filters, params):
        where += f" AND {condition}"
    if spec.among is not None:
        dimension, values = spec.among
        _check(dimension)
        where += f" AND {dimension} = ANY(%(among)s)"
        params["among"] = list(values)
    if spec.group is not None:
        _check(spec.group)
    group = spec.group or "NULL::text"
    sql = (
        f"SELECT {group}, count(*) FILTER (WHERE {MATURED}), count(*) FILTER (WHERE {MATURED} AND {success}), "
        f"count(*) FILTER (WHERE NOT ({MATURED})) FROM metric_contacts WHERE {where} GROUP BY 1"
    )
    return [(span, sql, {**params, "lo": span.since_us, "hi": span.until_us}) for span in spec.spans]


def _tally(spec: RowSpec, cursors: Sequence[tuple[Span, psycopg.Cursor[Any]]]) -> dict[str | None, Counts]:
    """The counts of a spec's spans, added up by group value (or labelled by span day)."""
    result: dict[str | None, Counts] = {}
    for span, cursor in cursors:
        for key, matured, resolved, pending in cursor:
            label = key if spec.group is not None else (span.day.isoformat() if span.day is not None else "")
            counts = Counts(int(matured), int(resolved), int(pending))
            before = result.get(label)
            result[label] = counts if before is None else before + counts
    return result


def _check(dimension: str) -> None:
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}")


def quick_returns(conn: psycopg.Connection[Any], spec: QuickReturns) -> list[int]:
    """``metrics.windows.QuickReturns`` from the copy of the candidates with a repeat within a day
    (metric_quick_returns, migration 016): one range scan by time, one count per bound."""
    where = ["started_us >= %(lo)s AND started_us < %(hi)s AND end_us <= %(matured_by)s"]
    params: dict[str, object] = {"lo": spec.since_us, "hi": spec.until_us, "matured_by": spec.matured_by_us}
    if spec.metric == "tier1":
        where.append(TIER1_SUCCESS)
    where += filter_conditions(spec.filters, params)
    counts = ", ".join(
        f"count(*) FILTER (WHERE next_repeat_us > end_us + %(b{i})s)" for i in range(len(spec.bounds_us))
    )
    params.update({f"b{i}": bound for i, bound in enumerate(spec.bounds_us)})
    row = conn.execute(f"SELECT {counts} FROM metric_quick_returns WHERE {' AND '.join(where)}", params).fetchone()
    assert row is not None
    return [int(count) for count in row]


def filter_conditions(filters: Sequence[tuple[str, str]], params: dict[str, object]) -> list[str]:
    """A question's filters as conditions on the candidates (``tier`` compared as an integer), their values added to
    ``params``; ValueError for an unknown dimension (never user text: the grammar checks names first)."""
    conditions = []
    for index, (dimension, value) in enumerate(filters):
        if dimension not in (*DIMENSIONS, "tier"):
            raise ValueError(f"unknown dimension {dimension!r}")
        conditions.append(f"{dimension} = %(f{index})s")
        params[f"f{index}"] = int(value) if dimension == "tier" else value
    return conditions

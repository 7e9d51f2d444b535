"""Exact daily rollups: what they hold, and how a question is answered from them (pure, numpy, no I/O).

A rollup *bucket* is one value of one dimension (an agent, a team, ...; or "*" for everyone) on one local
calendar day. It holds, over that bucket's candidates: how many there are (all, and tier 1), the earliest
and latest start and end, and for each standard window how many have no repeat within it (ACR successes)
and how many are tier-1 successes. The store keeps them as one packed int64 table per (dimension, day).

A bucket answers a question exactly when it is decided:
  - entirely inside the period (min_start >= since and max_start < until) or entirely outside it, and
  - entirely matured (max_end + W <= as_of) or entirely pending (min_end + W > as_of).
Undecided buckets (at the period's edges, or straddling as_of - W) are counted from contacts, either one
value at a time or, when a day has many of them, the whole day. At an edge day whose part outside the
period is the shorter (e.g. a 30-day period ending now starts at this time of day 30 days ago), the day's
buckets are taken whole and the contacts of the part outside are counted and subtracted: exact, and it
reads the few contacts of that short part instead of most of a day.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt

from metrics.query import Counts, Metric
from metrics.timeutil import US_PER_DAY

ROLLUP_WINDOW_DAYS = (1, 3, 7, 14, 30)
ROLLUP_WINDOWS_US = frozenset(days * US_PER_DAY for days in ROLLUP_WINDOW_DAYS)
ROLLUP_COLUMNS = (
    "value_id",
    "n_all",
    "n_t1",
    "min_start",
    "max_start",
    "min_end",
    "max_end",
    *(f"acr_{days}d" for days in ROLLUP_WINDOW_DAYS),
    *(f"t1_{days}d" for days in ROLLUP_WINDOW_DAYS),
)
_COLUMN = {name: index for index, name in enumerate(ROLLUP_COLUMNS)}
EVERYONE = "*"  # the rollup dimension of the whole center; its only value is ""
NO_VALUE = ""  # the value of contacts without one (e.g. no team): in totals, never a breakdown row

Table = npt.NDArray[np.int64]


@dataclass
class RollupDays:
    """The buckets of one dimension over a range of days, as the store read them in one snapshot.

    ``table`` has one row per bucket and the columns ROLLUP_COLUMNS; ``days`` the bucket's day (ordinal);
    ``values[value_id]`` is the value's text. ``stale`` days changed since they were rolled up: their
    buckets are absent and they must be counted from contacts. A day neither stale nor present had no
    candidates.
    """

    values: Sequence[str]
    days: npt.NDArray[np.int64]
    table: Table
    stale: set[date] = field(default_factory=set)


@dataclass
class RollupPart:
    """What the rollups answered (counts per key), and what is left for counting from contacts: some values
    on some days (``per_value``), and whole days (``whole_days``: stale, or with too many undecided buckets)."""

    counts: dict[str | None, Counts] = field(default_factory=dict)
    per_value: dict[date, set[str]] = field(default_factory=dict)
    whole_days: set[date] = field(default_factory=set)
    subtract_days: set[date] = field(default_factory=set)  # whole day counted: subtract its part outside the period


def success_column(metric: Metric, window_us: int) -> str:
    """The rollup column of a metric's successes for a standard window (KeyError for other windows)."""
    if window_us not in ROLLUP_WINDOWS_US:
        raise KeyError(window_us)
    return f"{'acr' if metric == 'acr' else 't1'}_{window_us // US_PER_DAY}d"


def pack(rows: Sequence[Sequence[int]] | Table) -> bytes:
    """A bucket table as stored: int64 rows of ROLLUP_COLUMNS."""
    return np.ascontiguousarray(rows, dtype=np.int64).reshape(-1, len(ROLLUP_COLUMNS)).tobytes()


def unpack(data: bytes) -> Table:
    return np.frombuffer(data, dtype=np.int64).reshape(-1, len(ROLLUP_COLUMNS))


def answer(
    data: RollupDays,
    *,
    metric: Metric,
    window_us: int,
    as_of_us: int,
    since_us: int,
    until_us: int,
    value: str | None,
    group: str | None,
    per_value_limit: int,
    complement_shorter: Collection[date] = (),
) -> RollupPart:
    """Counts of the decided buckets, grouped by "value", "day" or nothing (key ""), and what is left.

    ``until_us`` must already be clipped to as_of. A day with more than ``per_value_limit`` undecided
    buckets, or an undecided bucket of contacts without a value, is left whole (none of its buckets is
    used, so nothing is counted twice), and so are stale days.

    ``complement_shorter`` are the edge days whose part outside the period is shorter than the part inside.
    If every bucket of such a day is entirely matured or entirely pending, the whole day is taken from the
    rollup and the day is returned in ``subtract_days``: the caller subtracts what it counts, from contacts,
    in the part of the day outside the period (exact, as those contacts are in the same decided buckets).
    """
    table, days = data.table, data.days
    part = RollupPart(whole_days=set(data.stale))
    if len(table) == 0:
        return part
    keep = np.ones(len(table), dtype=bool)
    if data.stale:
        keep &= ~np.isin(days, [d.toordinal() for d in data.stale])
    if value is not None:
        try:
            keep &= table[:, 0] == data.values.index(value)
        except ValueError:
            return part  # no rolled-up bucket has this value
    n = table[:, _COLUMN["n_all" if metric == "acr" else "n_t1"]]
    ok = table[:, _COLUMN[success_column(metric, window_us)]]
    min_start, max_start = table[:, _COLUMN["min_start"]], table[:, _COLUMN["max_start"]]
    inside = (min_start >= since_us) & (max_start < until_us)
    outside = (max_start < since_us) | (min_start >= until_us)
    matured = table[:, _COLUMN["max_end"]] + window_us <= as_of_us
    pending = table[:, _COLUMN["min_end"]] + window_us > as_of_us
    undecided = keep & (n > 0) & ~outside & ~(inside & (matured | pending))
    if undecided.any() and complement_shorter:
        edge_days = np.unique(days[undecided])
        edge_days = edge_days[np.isin(edge_days, [d.toordinal() for d in complement_shorter])]
        straddling = np.unique(days[keep & (n > 0) & ~(matured | pending)])  # as_of - W inside a bucket
        edge_days = edge_days[~np.isin(edge_days, straddling)]
        if len(edge_days):
            on_edge = np.isin(days, edge_days)
            inside = inside | on_edge
            undecided &= ~on_edge
            part.subtract_days = {date.fromordinal(day) for day in edge_days.tolist()}
    if undecided.any():
        undecided_days = days[undecided]
        day_list, per_day = np.unique(undecided_days, return_counts=True)
        whole = set(day_list[per_day > per_value_limit].tolist())
        no_value = data.values.index(NO_VALUE) if NO_VALUE in data.values else -1
        whole.update(undecided_days[table[undecided, 0] == no_value].tolist())
        if whole:
            part.whole_days.update(date.fromordinal(day) for day in whole)
            keep &= ~np.isin(days, list(whole))
            undecided &= keep
        for value_id, day in zip(table[undecided, 0].tolist(), days[undecided].tolist(), strict=True):
            part.per_value.setdefault(date.fromordinal(day), set()).add(data.values[value_id])
    use_matured = keep & inside & matured
    use_pending = keep & inside & pending

    if group == "value":
        keys = table[:, 0]
    elif group == "day":
        keys = days - (days.min() if len(days) else 0)
    else:
        keys = np.zeros(len(table), dtype=np.int64)
    used = use_matured | use_pending
    if used.any():
        size = int(keys.max()) + 1
        # Integer sums: bincount in float64 is exact for counts below 2**53.
        matured_sum, resolved_sum, pending_sum = (
            np.bincount(keys, weights=np.where(mask, column, 0), minlength=size).round().astype(np.int64)
            for mask, column in ((use_matured, n), (use_matured, ok), (use_pending, n))
        )
        present = np.flatnonzero((matured_sum > 0) | (pending_sum > 0))
        first_day = int(days.min()) if len(days) else 0
        for key, m, r, p in zip(
            present.tolist(),
            matured_sum[present].tolist(),
            resolved_sum[present].tolist(),
            pending_sum[present].tolist(),
            strict=True,
        ):
            label: str | None
            if group == "value":
                text = data.values[key]
                label = None if text == NO_VALUE else text
            elif group == "day":
                label = date.fromordinal(first_day + key).isoformat()
            else:
                label = ""
            part.counts[label] = Counts(m, r, p)
    return part

"""Exact rollups: what they hold, and how a question is answered from them (pure, numpy, no I/O).

A rollup *bucket* is one value of one dimension (an agent, a team, ...; or "*" for everyone) on one local
calendar day, or in one hour of it. It holds, over that bucket's candidates: how many there are (all, and
tier 1), the earliest and latest start and end, and for each standard window how many have no repeat within
it (ACR successes) and how many are tier-1 successes. The store keeps one packed table per (dimension, day)
of day buckets, and one of hour buckets (``pack_hours``: compact, as there are ~20 times more of them).

A bucket answers a question exactly when it is decided:
  - entirely inside the period (min_start >= since and max_start < until) or entirely outside it, and
  - entirely matured (max_end + W <= as_of) or entirely pending (min_end + W > as_of).
A question is answered from the day buckets; a day with undecided buckets (at the period's edges, or the
day of as_of - W) is answered from its hour buckets instead, and only the undecided hours are counted from
contacts, either one value at a time or the whole hour. A *unit* is what a bucket table is cut into: a
day (its ordinal) or an hour (``hour_unit``). At an edge unit whose part outside the period is the shorter
(e.g. a 30-day period ending now starts at this time of day 30 days ago), the unit's buckets are taken
whole and the contacts of the part outside are counted and subtracted: exact, and it reads the few
contacts of that short part instead of most of the unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt

from metrics.definitions import in_period, is_matured
from metrics.query import Metric
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_SECOND

ROLLUP_WINDOW_DAYS = (1, 3, 7, 14, 30)
ROLLUP_WINDOWS_US = frozenset(days * US_PER_DAY for days in ROLLUP_WINDOW_DAYS)
_SUCCESS_COLUMNS = (*(f"acr_{days}d" for days in ROLLUP_WINDOW_DAYS), *(f"t1_{days}d" for days in ROLLUP_WINDOW_DAYS))
ROLLUP_COLUMNS = ("value_id", "n_all", "n_t1", "min_start", "max_start", "min_end", "max_end", *_SUCCESS_COLUMNS)
# Hour buckets as stored (int32): the hour is the slot-th hour after the local midnight (a day has 23-25);
# ends are whole seconds after that midnight, rounded outwards (see pack_hours).
HOUR_COLUMNS = ("value_id", "slot", "n_all", "n_t1", "min_end_s", "max_end_s", *_SUCCESS_COLUMNS)
SLOTS_PER_UNIT_DAY = 32  # hour units are day ordinal * 32 + slot
_COLUMN = {name: index for index, name in enumerate(ROLLUP_COLUMNS)}
EVERYONE = "*"  # the rollup dimension of the whole center; its only value is ""
NO_VALUE = ""  # the value of contacts without one (e.g. no team): in totals, never a breakdown row
_INT32_MAX = 2**31 - 1
_FAR_US = 2**62  # a stored end too late for int32 seconds: stands for "never matured"

Table = npt.NDArray[np.int64]


@dataclass
class RollupDays:
    """The buckets of one dimension over some days, as the store read them in one snapshot.

    ``table`` has one row per bucket and the columns ROLLUP_COLUMNS; ``days`` the bucket's day (ordinal);
    ``units`` the bucket's unit (None: the day; for hour buckets ``hour_unit(day, slot)``);
    ``values[value_id]`` is the value's text. ``stale`` days have no buckets here and must be counted from
    contacts (changed since they were rolled up; or, for hour buckets, none stored). A day neither stale
    nor present had no candidates.
    """

    values: Sequence[str]
    days: npt.NDArray[np.int64]
    table: Table
    stale: set[date] = field(default_factory=set)
    units: npt.NDArray[np.int64] | None = None


@dataclass
class RollupPart:
    """What the rollups answered (counts per key), and what is left for counting from contacts, by unit:
    some values (``per_value``), whole units (``whole``: too many undecided buckets), and the part outside
    the period of units that were taken whole (``subtract``)."""

    counts: dict[str | None, list[int]] = field(default_factory=dict)  # [matured, resolved, pending] per key
    per_value: dict[int, set[str]] = field(default_factory=dict)
    whole: set[int] = field(default_factory=set)
    subtract: set[int] = field(default_factory=set)
    split: set[int] = field(default_factory=set)  # counted all pending: the caller moves the matured ones


def success_column(metric: Metric, window_us: int) -> str:
    """The rollup column of a metric's successes for a standard window (KeyError for other windows)."""
    if window_us not in ROLLUP_WINDOWS_US:
        raise KeyError(window_us)
    return f"{'acr' if metric == 'acr' else 't1'}_{window_us // US_PER_DAY}d"


def pack(rows: Sequence[Sequence[int]] | Table) -> bytes:
    """A day bucket table as stored: int64 rows of ROLLUP_COLUMNS."""
    return np.ascontiguousarray(rows, dtype=np.int64).reshape(-1, len(ROLLUP_COLUMNS)).tobytes()


def unpack(data: bytes) -> Table:
    return np.frombuffer(data, dtype=np.int64).reshape(-1, len(ROLLUP_COLUMNS))


def hour_unit(day_ordinal: int, slot: int) -> int:
    return day_ordinal * SLOTS_PER_UNIT_DAY + slot


def hour_bounds(unit: int, day_start_us: int, day_end_us: int) -> tuple[int, int]:
    """``[start, end)`` of an hour unit of the day ``[day_start, day_end)`` (the last hour may be cut short)."""
    slot = unit % SLOTS_PER_UNIT_DAY
    return (day_start_us + slot * US_PER_HOUR, min(day_start_us + (slot + 1) * US_PER_HOUR, day_end_us))


def pack_hours(table: Table, day_start_us: int) -> bytes:
    """Hour buckets as stored: int64 rows of HOUR_COLUMNS with ends in µs, packed as int32 rows.

    Ends become seconds after the day's start, the earliest rounded down and the latest up, so a bucket
    is judged entirely matured or entirely pending only when it truly is (rounding can only leave a bucket
    undecided, i.e. counted from contacts); a latest end beyond int32 is stored as "never".
    """
    out = np.array(table, dtype=np.int64).reshape(-1, len(HOUR_COLUMNS))
    out[:, 4] = np.minimum((out[:, 4] - day_start_us) // US_PER_SECOND, _INT32_MAX - 1)
    out[:, 5] = np.minimum(-((day_start_us - out[:, 5]) // US_PER_SECOND), _INT32_MAX)
    if len(out) and (out.min() < 0 or out.max() > _INT32_MAX):
        raise ValueError("hour rollup value out of int32 range")
    return out.astype(np.int32).tobytes()


def hour_rows(data: bytes) -> int:
    """How many hour buckets a stored hour table holds."""
    return len(data) // (4 * len(HOUR_COLUMNS))


def unpack_hours(
    data: bytes, day_start_us: int, day_end_us: int, out: Table | None = None
) -> tuple[Table, npt.NDArray[np.int64]]:
    """Stored hour buckets of the day ``[day_start, day_end)`` as ROLLUP_COLUMNS rows, and their slots.

    Written into ``out`` (``hour_rows(data)`` rows; column by column, so best column-major) when given.
    A bucket's start bounds are its hour's bounds (they contain every start in it, which is all an
    inside/outside decision needs)."""
    raw = np.frombuffer(data, dtype=np.int32).reshape(-1, len(HOUR_COLUMNS))
    table = np.empty((len(raw), len(ROLLUP_COLUMNS)), dtype=np.int64, order="F") if out is None else out
    slots = raw[:, 1].astype(np.int64)
    hour_start = slots * US_PER_HOUR + day_start_us
    table[:, 0] = raw[:, 0]
    table[:, 1] = raw[:, 2]
    table[:, 2] = raw[:, 3]
    table[:, 3] = hour_start
    table[:, 4] = np.minimum(hour_start + US_PER_HOUR, day_end_us) - 1
    table[:, 5] = raw[:, 4].astype(np.int64) * US_PER_SECOND + day_start_us
    max_end = raw[:, 5].astype(np.int64)
    table[:, 6] = np.where(max_end >= _INT32_MAX, _FAR_US, max_end * US_PER_SECOND + day_start_us)
    table[:, 7:] = raw[:, 6:]
    return table, slots


def _complement_is_shorter(bounds: tuple[int, int], since_us: int, until_us: int, at_most_us: int) -> bool:
    start, end = bounds
    inside = min(end, until_us) - max(start, since_us)
    outside = (end - start) - inside
    return 0 < outside <= min(inside, at_most_us)


def _shorter_complements(
    undecided_units: npt.NDArray[np.int64],
    straddling: npt.NDArray[np.int64],
    bounds: Mapping[int, tuple[int, int]],
    since_us: int,
    until_us: int,
    at_most_us: int,
) -> set[int]:
    """The edge units with undecided buckets that are cheaper taken whole minus their part outside the period:
    none of their buckets holds as_of - W, and that part is the shorter and at most ``at_most_us`` long."""
    candidates = np.unique(undecided_units)
    return {
        unit
        for unit in candidates[~np.isin(candidates, straddling)].tolist()
        if _complement_is_shorter(bounds[unit], since_us, until_us, at_most_us)
    }


def _units_left_whole(
    data: RollupDays, units: npt.NDArray[np.int64], undecided: npt.NDArray[np.bool_], per_value_limit: int
) -> set[int]:
    """Units counted whole from contacts: too many undecided buckets, or an undecided bucket without a value."""
    undecided_units = units[undecided]
    unit_list, per_unit = np.unique(undecided_units, return_counts=True)
    whole = set(unit_list[per_unit > per_value_limit].tolist())
    no_value = data.values.index(NO_VALUE) if NO_VALUE in data.values else -1
    whole.update(undecided_units[data.table[undecided, 0] == no_value].tolist())
    return whole


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
    bounds: Mapping[int, tuple[int, int]],
    complement_at_most_us: int = 0,
    split_at_maturity: bool = False,
) -> RollupPart:
    """Counts of the decided buckets, grouped by "value", "day" or nothing (key ""), and what is left.

    ``until_us`` must already be clipped to as_of. ``bounds`` are the ``[start, end)`` of every unit. A unit
    with more than ``per_value_limit`` undecided buckets, or an undecided bucket of contacts without a value,
    is left whole (none of its buckets is used, so nothing is counted twice); stale days are left out.

    An edge unit whose part outside the period is shorter than the part inside, and at most
    ``complement_at_most_us`` long, is taken whole if every bucket of it is entirely matured or entirely
    pending; it is returned in ``subtract``: the caller subtracts what it counts, from contacts, in the part
    of the unit outside the period (exact, as those contacts are in the same decided buckets).

    With ``split_at_maturity``, a unit left whole that lies inside the period and holds T = as_of - W is
    instead taken as all pending and returned in ``split``: a contact starting after T also ends after it,
    so only the contacts starting in ``[unit start, T]`` can be matured, and the caller counts those and
    moves the matured ones (adds (matured, resolved, -matured)).
    """
    table, days = data.table, data.days
    units = days if data.units is None else data.units
    part = RollupPart()
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
    # A bucket is inside the period when its earliest and latest starts are, matured when its latest end is,
    # pending when its earliest end is not: the definitions' rules, applied to the bucket's bounds.
    inside = in_period(min_start, since_us, until_us) & in_period(max_start, since_us, until_us)
    outside = (max_start < since_us) | (min_start >= until_us)
    matured = is_matured(table[:, _COLUMN["max_end"]], window_us, as_of_us)
    pending = ~is_matured(table[:, _COLUMN["min_end"]], window_us, as_of_us)
    counted = keep & (n > 0)
    undecided = counted & ~outside & ~(inside & (matured | pending))
    if undecided.any() and complement_at_most_us > 0:
        straddling = np.unique(units[counted & ~(matured | pending)])  # as_of - W inside a bucket
        part.subtract = _shorter_complements(
            units[undecided], straddling, bounds, since_us, until_us, complement_at_most_us
        )
        if part.subtract:
            on_edge = np.isin(units, list(part.subtract))
            inside = inside | on_edge
            undecided &= ~on_edge
    if undecided.any():
        whole = _units_left_whole(data, units, undecided, per_value_limit)
        if whole and split_at_maturity:
            matured_by = as_of_us - window_us
            part.split = {
                unit
                for unit in whole
                if since_us <= bounds[unit][0] <= matured_by < bounds[unit][1] - 1 and bounds[unit][1] <= until_us
            }
            whole -= part.split
            undecided &= ~np.isin(units, list(part.split))
        if whole:
            part.whole = whole
            keep &= ~np.isin(units, list(whole))
            undecided &= keep
        for value_id, unit in zip(table[undecided, 0].tolist(), units[undecided].tolist(), strict=True):
            part.per_value.setdefault(unit, set()).add(data.values[value_id])
    use_matured = keep & inside & matured
    use_pending = keep & inside & pending
    if part.split:
        all_pending = keep & np.isin(units, list(part.split))
        use_matured &= ~all_pending
        use_pending = (use_pending & ~all_pending) | all_pending
    if (use_matured | use_pending).any():
        part.counts = _sums(data, group, n, ok, use_matured, use_pending)
    return part


def _sums(
    data: RollupDays,
    group: str | None,
    n: Table,
    ok: Table,
    use_matured: npt.NDArray[np.bool_],
    use_pending: npt.NDArray[np.bool_],
) -> dict[str | None, list[int]]:
    """[matured, resolved, pending] per key of ``group`` ("value", "day" or None: one key "") over the buckets
    used: ``n`` and ``ok`` (candidates and successes) of the matured ones, ``n`` of the pending ones."""
    table, days = data.table, data.days
    first_day = int(days.min())
    if group == "value":
        keys = table[:, 0]
    elif group == "day":
        keys = days - first_day
    else:
        keys = np.zeros(len(table), dtype=np.int64)
    size = int(keys.max()) + 1
    # Integer sums: bincount in float64 is exact for counts below 2**53.
    matured_sum, resolved_sum, pending_sum = (
        np.bincount(keys, weights=np.where(mask, column, 0), minlength=size).round().astype(np.int64)
        for mask, column in ((use_matured, n), (use_matured, ok), (use_pending, n))
    )
    present = np.flatnonzero((matured_sum > 0) | (pending_sum > 0))
    labels: list[str | None]
    if group == "value":
        labels = [None if (text := data.values[key]) == NO_VALUE else text for key in present.tolist()]
    elif group == "day":
        labels = [date.fromordinal(first_day + key).isoformat() for key in present.tolist()]
    else:
        labels = [""] * len(present)
    sums = np.column_stack((matured_sum, resolved_sum, pending_sum))[present].tolist()
    return dict(zip(labels, sums, strict=True))

"""The query layer: answers a ``MetricQuery`` from any store that implements ``MetricSource``.

The engine only plans; the store counts. The period is cut at local midnights into calendar days. When the
store has rollups for the question's window and scope, each day's buckets (one per dimension value) that
are decided, i.e. entirely inside or outside the period and entirely matured or pending, are summed from
the rollups (``metrics.rollup``); a day with undecided buckets (the period's edges, the day of as_of - W)
is answered from its hour buckets the same way; the few undecided buckets or hours, the days changed since
they were rolled up, and every question the rollups do not cover are counted from contacts. Both ways count
the same thing (``metrics.definitions``), so the split never changes a number, only how fast it comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import date, tzinfo
from typing import Any, Protocol

import numpy as np

from metrics import rollup
from metrics.definitions import clip_until
from metrics.periods import local_date, local_days, month_key, week_key
from metrics.query import Counts, Dimension, Filter, Metric, MetricQuery, MetricResult, Row
from metrics.rollup import EVERYONE, SLOTS_PER_UNIT_DAY, RollupDays, hour_bounds
from metrics.timeutil import US_PER_SECOND

NO_VALUE = None  # the key of contacts without a value for the breakdown's dimension (left out of rows)


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch ``[since, until)`` of the period counted from contacts; ``day`` labels it for ``by=day``."""

    since_us: int
    until_us: int
    day: date | None = None


@dataclass(frozen=True, slots=True)
class RowSpec:
    """Count candidates directly, over ``spans``, grouped by ``group`` (a dimension) or by span day."""

    metric: Metric
    window_us: int
    as_of_us: int
    filters: tuple[tuple[Filter, str], ...]
    group: Dimension | None
    spans: tuple[Span, ...]
    among: tuple[Dimension, tuple[str, ...]] | None = None  # and the dimension has one of these values


class MetricReader(Protocol):
    """One consistent snapshot of the store (every call sees the same data)."""

    def rollup_windows(self) -> frozenset[int]:
        """The windows (µs) the rollups hold counts for; empty when rollups are unavailable."""
        ...

    def rollup_days(self, dimension: str, first_day: date, last_day: date) -> RollupDays | None:
        """The rollup buckets of ``dimension`` ("*": everyone) for the local days first..last, or None when
        the rollups cannot answer at all (then everything is counted from contacts)."""
        ...

    def rollup_hours(self, dimension: str, days: Sequence[date]) -> RollupDays | None:
        """The hour buckets of ``dimension`` on ``days`` (days without them are returned as stale), or None
        when the store keeps none."""
        ...

    def row_counts(self, specs: Sequence[RowSpec]) -> list[dict[str | None, Counts]]:
        """Counts from contacts for each spec, keyed by the group value (None: contacts without one), the span
        day as ISO text for spans with a day, or "" with neither. All of a question's counting comes in one
        call, so a database server can be sent every statement at once."""
        ...


class MetricSource(Protocol):
    """What the engine needs from a store: a read snapshot for one question in one time zone."""

    def metric_reader(self, zone: tzinfo) -> AbstractContextManager[MetricReader]: ...


def compute(
    source: MetricSource,
    query: MetricQuery,
    zone: tzinfo,
    *,
    use_rollups: bool = True,
    use_hours: bool = True,
    per_value_limit: int | None = None,
) -> MetricResult:
    """Answer ``query``; calendar days (for ``by=day`` and for the rollups) are days in ``zone``.

    ``use_rollups=False`` forces counting from contacts only, ``use_hours=False`` answers undecided days
    without the hour buckets, and ``per_value_limit`` overrides how many undecided buckets a day (or an
    hour) may have before it is counted whole: the tests compare every way.
    """
    since_us = query.since_us
    until_us = clip_until(query.until_us, query.as_of_us)
    # Weeks and months are sums of their local days: counted by day, folded in _result.
    counted = replace(query, by="day") if query.by in ("week", "month") else query
    with source.metric_reader(zone) as reader:
        counts = _count(reader, counted, zone, since_us, until_us, use_rollups, use_hours, per_value_limit)
    return _result(query, zone, since_us, until_us, counts)


# How many undecided buckets a day may have before it is counted whole (or from its hour buckets) rather
# than value by value: one value of an agent is a short walk of the agent index; other dimensions scan
# the day's time index, which the hour buckets narrow to an hour. In an hour, a few agents (long contacts
# across as_of - W) are counted one by one, but most of the hour of as_of - W is cheaper counted whole.
_PER_VALUE_LIMIT = {"agent": 8}
_PER_VALUE_LIMIT_IN_HOUR = {"agent": 60}
_PER_VALUE_LIMIT_WITHOUT_HOURS = {"agent": 60, "team": 3, "queue": 3, "channel": 2}
# Without hour buckets, an edge day is taken whole minus its outside part whenever that part is the
# shorter; with them, only when that part is at most a quarter of an hour (else the hour buckets answer
# the day for less: at most half an hour of contacts, in its edge hour).
_UNLIMITED_US = 2**62
_DAY_COMPLEMENT_WITH_HOURS_US = 15 * 60 * US_PER_SECOND


@dataclass
class _RowPlan:
    """What is left to count from contacts: stretches counted whole, per value, or to subtract."""

    by_day: bool
    whole: list[Span] = field(default_factory=list)
    among: list[tuple[Span, tuple[str, ...]]] = field(default_factory=list)
    outside: list[Span] = field(default_factory=list)
    moved: list[Span] = field(default_factory=list)  # counted as pending: move the matured ones

    def add_whole(self, day: date, start_us: int, end_us: int, since_us: int, until_us: int) -> None:
        lo, hi = max(start_us, since_us), min(end_us, until_us)
        if lo < hi:
            self.whole.append(Span(lo, hi, day if self.by_day else None))

    def add_among(self, day: date, start_us: int, end_us: int, since_us: int, until_us: int, values: set[str]) -> None:
        span = Span(max(start_us, since_us), min(end_us, until_us), day if self.by_day else None)
        self.among.append((span, tuple(sorted(values))))

    def add_outside(self, day: date, start_us: int, end_us: int, since_us: int, until_us: int) -> None:
        label = day if self.by_day else None
        if start_us < since_us:
            self.outside.append(Span(start_us, since_us, label))
        if until_us < end_us:
            self.outside.append(Span(until_us, end_us, label))

    def add_rest(
        self,
        part: rollup.RollupPart,
        day_of: Callable[[int], date],
        unit_bounds: Mapping[int, tuple[int, int]],
        since_us: int,
        until_us: int,
    ) -> None:
        """What the rollups left of their units: some values to count, and outside parts to subtract."""
        for unit, values in part.per_value.items():
            self.add_among(day_of(unit), *unit_bounds[unit], since_us, until_us, values)
        for unit in part.subtract:
            self.add_outside(day_of(unit), *unit_bounds[unit], since_us, until_us)

    def whole_spans(self) -> tuple[Span, ...]:
        """The whole stretches in time order, adjacent ones with the same label merged (fewer queries)."""
        merged: list[Span] = []
        for span in sorted(self.whole, key=lambda s: s.since_us):
            if merged and merged[-1].until_us == span.since_us and merged[-1].day == span.day:
                merged[-1] = Span(merged[-1].since_us, span.until_us, span.day)
            else:
                merged.append(span)
        return tuple(merged)


def _count(
    reader: MetricReader,
    query: MetricQuery,
    zone: tzinfo,
    since_us: int,
    until_us: int,
    use_rollups: bool,
    use_hours: bool,
    per_value_limit: int | None,
) -> _Tally:
    days = local_days(since_us, until_us, zone)
    if not days:
        return {}
    counts: _Tally = {}
    plan = _RowPlan(by_day=query.by == "day")
    bounds = {day.toordinal(): (start, end) for day, start, end in days}
    whole_days: set[date] = {day for day, _, _ in days}  # until the rollups answer some of them
    target = _rollup_target(query) if use_rollups else None
    if target is not None and query.window_us in reader.rollup_windows():
        data = reader.rollup_days(target[0] or EVERYONE, days[0][0], days[-1][0])
        if data is not None:
            rollups = _Rollups(reader, query, target, since_us, until_us, per_value_limit)
            counts, whole_days = rollups.count(data, bounds, plan, use_hours)
    for day in whole_days:
        plan.add_whole(day, *bounds[day.toordinal()], since_us, until_us)
    _count_rows(reader, query, plan, target, counts)
    return counts


@dataclass
class _Rollups:
    """Answers what it can of one question from the rollups, leaving the rest to ``_RowPlan``."""

    reader: MetricReader
    query: MetricQuery
    target: tuple[Dimension | None, str | None, str | None]
    since_us: int
    until_us: int
    per_value_limit: int | None

    def answer(self, data: RollupDays, limit: int, **options: Any) -> rollup.RollupPart:
        query = self.query
        return rollup.answer(
            data,
            metric=query.metric,
            window_us=query.window_us,
            as_of_us=query.as_of_us,
            since_us=self.since_us,
            until_us=self.until_us,
            value=self.target[1],
            group=self.target[2],
            per_value_limit=limit if self.per_value_limit is None else self.per_value_limit,
            **options,
        )

    def count(
        self, data: RollupDays, bounds: dict[int, tuple[int, int]], plan: _RowPlan, use_hours: bool
    ) -> tuple[_Tally, set[date]]:
        """Counts from the day buckets (refined by the hour buckets), and the days left to count whole."""
        dim = self.target[0] or EVERYONE
        limits = _PER_VALUE_LIMIT if use_hours else _PER_VALUE_LIMIT_WITHOUT_HOURS
        part = self.answer(
            data,
            limits.get(dim, 0),
            bounds=bounds,
            complement_at_most_us=_DAY_COMPLEMENT_WITH_HOURS_US if use_hours else _UNLIMITED_US,
        )
        counts = part.counts  # the first counts: taken over, not copied
        whole_days = {date.fromordinal(unit) for unit in part.whole}
        plan.add_rest(part, date.fromordinal, bounds, self.since_us, self.until_us)
        hours = self.reader.rollup_hours(dim, sorted(whole_days)) if use_hours and whole_days else None
        if hours is not None:
            whole_days = self.count_hours(hours, bounds, plan, counts)
        return counts, whole_days | data.stale

    def count_hours(
        self, hours: RollupDays, bounds: dict[int, tuple[int, int]], plan: _RowPlan, counts: _Tally
    ) -> set[date]:
        """Add what the hour buckets of the days left whole answer; the days without hour buckets stay whole."""
        hour_units = {
            unit: hour_bounds(unit, *bounds[unit // SLOTS_PER_UNIT_DAY])
            for unit in np.unique(hours.units if hours.units is not None else hours.days).tolist()
        }
        part = self.answer(
            hours,
            _PER_VALUE_LIMIT_IN_HOUR.get(self.target[0] or EVERYONE, 0),
            bounds=hour_units,
            complement_at_most_us=_UNLIMITED_US,
            split_at_maturity=True,
        )
        _add(counts, part.counts)

        def day_of(unit: int) -> date:
            return date.fromordinal(unit // SLOTS_PER_UNIT_DAY)

        for unit in part.whole:
            plan.add_whole(day_of(unit), *hour_units[unit], self.since_us, self.until_us)
        plan.add_rest(part, day_of, hour_units, self.since_us, self.until_us)
        matured_by = self.query.as_of_us - self.query.window_us
        for unit in part.split:
            plan.moved.append(Span(hour_units[unit][0], matured_by + 1, day_of(unit) if plan.by_day else None))
        return set(hours.stale)


def _count_rows(
    reader: MetricReader,
    query: MetricQuery,
    plan: _RowPlan,
    target: tuple[Dimension | None, str | None, str | None] | None,
    counts: _Tally,
) -> None:
    """Count from contacts what the rollups left, into ``counts``."""
    group_dimension: Dimension | None = None if query.by in (None, "day") else query.by  # type: ignore[assignment]

    def spec(spans: tuple[Span, ...], among: tuple[Dimension, tuple[str, ...]] | None = None) -> RowSpec:
        return RowSpec(query.metric, query.window_us, query.as_of_us, query.filters, group_dimension, spans, among)

    asked: list[tuple[RowSpec, int, bool]] = []  # (spec, sign, move_matured): how _merge takes its counts
    whole_spans = plan.whole_spans()
    if whole_spans:
        asked.append((spec(whole_spans), 1, False))
    if plan.among:
        assert target is not None and target[0] is not None
        asked += [(spec((span,), (target[0], among)), 1, False) for span, among in plan.among]
    if plan.outside:
        asked.append((spec(tuple(plan.outside)), -1, False))
    if plan.moved:
        asked.append((spec(tuple(plan.moved)), 1, True))
    if asked:
        answers = reader.row_counts([row_spec for row_spec, _, _ in asked])
        for (_, sign, move_matured), more in zip(asked, answers, strict=True):
            _merge(counts, more, sign, move_matured)


def _rollup_target(query: MetricQuery) -> tuple[Dimension | None, str | None, str | None] | None:
    """The rollup dimension, value and grouping that answer this scope and breakdown, if any: rollups hold
    one dimension at a time, so two filters, or a filter and a breakdown by another dimension, cannot."""
    filters = query.filters
    if len(filters) > 1 or any(name == "tier" for name, _ in filters):  # no rollup holds tiers
        return None
    dimension: Dimension | None = filters[0][0] if filters else None  # type: ignore[assignment]
    value = filters[0][1] if filters else None
    if query.by in ("day", "week", "month"):  # compute() asks weeks and months by day
        return (dimension, value, "day")
    if query.by is None:
        return (dimension, value, None)
    if dimension is not None and dimension != query.by:
        return None
    return (query.by, value, "value")  # type: ignore[return-value]


# Counts being summed, per key: [matured, resolved, pending] (lists: hundreds of keys are added up per question).
_Tally = dict[str | None, list[int]]


def _add(into: _Tally, more: _Tally) -> None:
    for key, sums in more.items():
        tally = into.get(key)
        if tally is None:
            into[key] = sums
        else:
            tally[0] += sums[0]
            tally[1] += sums[1]
            tally[2] += sums[2]


def _merge(into: _Tally, more: dict[str | None, Counts], sign: int = 1, move_matured: bool = False) -> None:
    """Add (or with sign=-1 subtract) ``more``; with ``move_matured``, ``more`` counted contacts already
    taken as pending: add their matured and resolved, and take the matured off the pending."""
    for key, counts in more.items():
        matured, resolved = sign * counts.matured, sign * counts.resolved
        pending = -matured if move_matured else sign * counts.pending
        tally = into.get(key)
        if tally is None:
            into[key] = [matured, resolved, pending]
        else:
            tally[0] += matured
            tally[1] += resolved
            tally[2] += pending


def _result(query: MetricQuery, zone: tzinfo, since_us: int, until_us: int, tally: _Tally) -> MetricResult:
    total = Counts(*(sum(column) for column in zip(*tally.values(), strict=True))) if tally else Counts()
    rows: list[Row] = []
    if query.by in ("day", "week", "month"):
        # Every day (week, month) of the period, with or without contacts, so a series has no silent gaps.
        key_of = {"day": date.isoformat, "week": week_key, "month": month_key}[query.by]
        series: dict[str, list[int]] = {}
        for day in _days(since_us, until_us, zone):
            sums = series.setdefault(key_of(day), [0, 0, 0])
            counted = tally.get(day.isoformat())
            if counted is not None:
                sums[0] += counted[0]
                sums[1] += counted[1]
                sums[2] += counted[2]
        rows = [Row(key, Counts(*sums)) for key, sums in series.items()]
    elif query.by is not None:
        kept = sorted(key for key, sums in tally.items() if key is not NO_VALUE and any(sums))
        rows = [Row(key, Counts(*tally[key])) for key in kept]
    return MetricResult(query=query, since_us=since_us, until_us=until_us, total=total, rows=rows)


def _days(since_us: int, until_us: int, zone: tzinfo) -> Iterator[date]:
    """The local dates ``[since, until)`` touches (as ``local_days``, without working out their midnights)."""
    if since_us >= until_us:
        return
    first, last = local_date(since_us, zone).toordinal(), local_date(until_us - 1, zone).toordinal()
    for ordinal in range(first, last + 1):
        yield date.fromordinal(ordinal)

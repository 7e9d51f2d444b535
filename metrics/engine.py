"""The query layer: answers a ``MetricQuery`` from any store that implements ``MetricSource``.

The engine only plans; the store counts. The period is cut at local midnights into calendar days. When the
store has rollups for the question's window and scope, each day's buckets (one per dimension value) that
are decided, i.e. entirely inside or outside the period and entirely matured or pending, are summed from
the rollups (``metrics.rollup``); the few undecided buckets, the days changed since they were rolled up,
and every question the rollups do not cover are counted from contacts. Both ways count the same thing
(``metrics.definitions``), so the split never changes a number, only how fast it comes back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Protocol

from metrics import rollup
from metrics.definitions import clip_until
from metrics.periods import local_days
from metrics.query import Counts, Dimension, Metric, MetricQuery, MetricResult, Row
from metrics.rollup import EVERYONE, RollupDays

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
    filters: tuple[tuple[Dimension, str], ...]
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

    def row_counts(self, spec: RowSpec) -> dict[str | None, Counts]:
        """Counts from contacts, keyed by the group value (None: contacts without one), the span day as
        ISO text for spans with a day, or "" with neither."""
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
    per_value_limit: int | None = None,
) -> MetricResult:
    """Answer ``query``; calendar days (for ``by=day`` and for the rollups) are days in ``zone``.

    ``use_rollups=False`` forces counting from contacts only, and ``per_value_limit`` overrides how many
    undecided buckets a day may have before it is counted whole: the tests compare every way.
    """
    since_us = query.since_us
    until_us = clip_until(query.until_us, query.as_of_us)
    with source.metric_reader(zone) as reader:
        counts = _count(reader, query, zone, since_us, until_us, use_rollups, per_value_limit)
    return _result(query, zone, since_us, until_us, counts)


# A day with more undecided buckets than this is counted from contacts whole, rather than value by value:
# one value of an agent is a short walk of the agent index; other dimensions scan the day's time index.
_PER_VALUE_LIMIT = {"agent": 60, "team": 3, "queue": 3, "channel": 2}


def _count(
    reader: MetricReader,
    query: MetricQuery,
    zone: tzinfo,
    since_us: int,
    until_us: int,
    use_rollups: bool,
    per_value_limit: int | None,
) -> dict[str | None, Counts]:
    days = local_days(since_us, until_us, zone)
    if not days:
        return {}
    counts: dict[str | None, Counts] = {}
    from_rows: set[date] = {day for day, _, _ in days}  # until the rollups answer some of them
    per_value: dict[date, set[str]] = {}
    subtract: set[date] = set()
    target = _rollup_target(query) if use_rollups else None
    if target is not None and query.window_us in reader.rollup_windows():
        dimension, value, group = target
        data = reader.rollup_days(dimension or EVERYONE, days[0][0], days[-1][0])
        complement_shorter = set()
        for day, start, end in days:
            inside = min(end, until_us) - max(start, since_us)
            if 0 < (end - start) - inside <= inside:
                complement_shorter.add(day)
        if data is not None:
            part = rollup.answer(
                data,
                metric=query.metric,
                window_us=query.window_us,
                as_of_us=query.as_of_us,
                since_us=since_us,
                until_us=until_us,
                value=value,
                group=group,
                per_value_limit=_PER_VALUE_LIMIT.get(dimension or EVERYONE, 0)
                if per_value_limit is None
                else per_value_limit,
                complement_shorter=complement_shorter,
            )
            _merge(counts, part.counts)
            from_rows = part.whole_days
            per_value = part.per_value
            subtract = part.subtract_days
    group_dimension: Dimension | None = None if query.by in (None, "day") else query.by  # type: ignore[assignment]
    specs: list[RowSpec] = []
    spans = _spans(days, from_rows, since_us, until_us, by_day=query.by == "day")
    if spans:
        specs.append(
            RowSpec(query.metric, query.window_us, query.as_of_us, query.filters, group_dimension, tuple(spans))
        )
    if per_value:
        assert target is not None and target[0] is not None
        dimension = target[0]
        bounds = {day: (max(start, since_us), min(end, until_us)) for day, start, end in days}
        for day, values in sorted(per_value.items()):
            lo, hi = bounds[day]
            span = Span(lo, hi, day if query.by == "day" else None)
            among = (dimension, tuple(sorted(values)))
            specs.append(
                RowSpec(query.metric, query.window_us, query.as_of_us, query.filters, group_dimension, (span,), among)
            )
    for spec in specs:
        _merge(counts, reader.row_counts(spec))
    outside: list[Span] = []
    for day, start, end in days:
        if day in subtract:
            label = day if query.by == "day" else None
            if start < since_us:
                outside.append(Span(start, since_us, label))
            if until_us < end:
                outside.append(Span(until_us, end, label))
    if outside:
        spec = RowSpec(query.metric, query.window_us, query.as_of_us, query.filters, group_dimension, tuple(outside))
        for key, extra in reader.row_counts(spec).items():
            _merge(counts, {key: Counts(-extra.matured, -extra.resolved, -extra.pending)})
    return counts


def _rollup_target(query: MetricQuery) -> tuple[Dimension | None, str | None, str | None] | None:
    """The rollup dimension, value and grouping that answer this scope and breakdown, if any: rollups hold
    one dimension at a time, so two filters, or a filter and a breakdown by another dimension, cannot."""
    filters = query.filters
    if len(filters) > 1:
        return None
    dimension: Dimension | None = filters[0][0] if filters else None
    value = filters[0][1] if filters else None
    if query.by == "day":
        return (dimension, value, "day")
    if query.by is None:
        return (dimension, value, None)
    if dimension is not None and dimension != query.by:
        return None
    return (query.by, value, "value")


def _spans(
    days: list[tuple[date, int, int]], from_rows: set[date], since_us: int, until_us: int, *, by_day: bool
) -> list[Span]:
    """The stretches to count from contacts: one per day for ``by=day``, else consecutive days merged."""
    spans: list[Span] = []
    for day, start, end in days:
        if day not in from_rows:
            continue
        lo, hi = max(start, since_us), min(end, until_us)
        if by_day:
            spans.append(Span(lo, hi, day))
        elif spans and spans[-1].until_us == lo:
            spans[-1] = Span(spans[-1].since_us, hi)
        else:
            spans.append(Span(lo, hi))
    return spans


def _merge(into: dict[str | None, Counts], more: dict[str | None, Counts]) -> None:
    for key, counts in more.items():
        before = into.get(key)
        into[key] = counts if before is None else before + counts


def _result(
    query: MetricQuery, zone: tzinfo, since_us: int, until_us: int, counts: dict[str | None, Counts]
) -> MetricResult:
    total = Counts()
    for key_counts in counts.values():
        total = total + key_counts
    rows: list[Row] = []
    if query.by == "day":
        # Every day of the period, with or without contacts, so a day series has no silent gaps.
        rows = [Row(day.isoformat(), counts.get(day.isoformat(), Counts())) for day in _days(since_us, until_us, zone)]
    elif query.by is not None:
        kept = [key for key, key_counts in counts.items() if key is not NO_VALUE and key_counts != Counts()]
        rows = [Row(key, counts[key]) for key in sorted(kept)]
    return MetricResult(query=query, since_us=since_us, until_us=until_us, total=total, rows=rows)


def _days(since_us: int, until_us: int, zone: tzinfo) -> Iterator[date]:
    for day, _, _ in local_days(since_us, until_us, zone):
        yield day

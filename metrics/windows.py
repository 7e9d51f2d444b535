"""Window sensitivity: the rate for several repeat windows on the *same* contacts, and how soon customers return.

A rate with a 1-hour window over the last 30 days and one with a 7-day window are not comparable as asked
separately: each scores the contacts matured for its own window, so the 7-day rate leaves out the latest week.
Here every window scores one cohort, the candidates matured for the longest window (W*). The engine already
answers that: for a window w asked as of ``as_of - W* + w``, "matured" (e + w <= as_of - W* + w) is exactly
e + W* <= as_of, and whether a contact has a repeat within w does not depend on as_of. So each window is one
ordinary question (from the rollups for their windows, from contacts for the others), no new query kind.

Time to return (first repeat start - end): within b is "not resolved with window b" for ACR, on the same cohort.

Windows under a day (10 minutes, 1 hour: dropped-call callbacks) have no rollups, and counting them from contacts
reads the whole period. On one cohort they need not: a contact with no repeat within a day has none within w < 1 day
either, so counts(w) = counts(1 day) + the cohort's contacts (of the metric's population, tier-1 successes apart
from repeats for tier-1) whose first repeat came after w but within the day (``QuickReturns``). A store answers
that from the few contacts with a repeat within a day (about one in ten), by a partial index (SQLite) or a table
holding a copy of them (PostgreSQL); the 1-day counts come from the rollups. Both paths give the same counts
(tests/test_windows.py holds them to each other).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Protocol, TypeVar

from metrics.definitions import clip_until
from metrics.errors import UserError
from metrics.periods import parse_window
from metrics.query import Counts, Filter, Metric, MetricQuery, MetricResult
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_MINUTE

Source = TypeVar("Source")
DEFAULT_WINDOWS = "1h,1d,3d,7d"
# The time-to-return distribution's bounds: dropped-call callbacks, same hour, same day, the usual windows.
RETURN_BOUNDS_US = (10 * US_PER_MINUTE, US_PER_HOUR, US_PER_DAY, 3 * US_PER_DAY, 7 * US_PER_DAY)
MAX_WINDOWS = 8
QUICK_RETURN_US = US_PER_DAY  # windows under this are counted as the 1-day window plus the quick returns after them


@dataclass(frozen=True, slots=True)
class QuickReturns:
    """Count the candidates started in ``[since, until)`` with ``end_us <= matured_by_us`` (the cohort) that match
    ``filters`` (tier-1: tier 1, not escalated, not marked unresolved) and whose first repeat came after each
    bound but no later than QUICK_RETURN_US after their end: ``end + bound < next_repeat <= end + 1 day``."""

    metric: Metric
    filters: tuple[tuple[Filter, str], ...]
    since_us: int
    until_us: int
    matured_by_us: int
    bounds_us: tuple[int, ...]  # each under QUICK_RETURN_US


class QuickReturnsSource(Protocol):
    def quick_returns(self, spec: QuickReturns) -> list[int]:
        """One count per bound of ``spec.bounds_us``, in that order (see QuickReturns)."""
        ...


@dataclass(frozen=True, slots=True)
class WindowSensitivity:
    """The cohort (candidates matured for ``cohort_window_us``), each window's counts on it, and the returns."""

    query: MetricQuery  # as asked (its window is ignored)
    since_us: int
    until_us: int  # clipped to as_of
    cohort_window_us: int
    windows: list[tuple[int, Counts]]  # (window, counts): matured = the cohort, resolved = no repeat within it
    # (pending is 0: the contacts outside the cohort are not scored by any window)
    returns: list[tuple[int, int]]  # (bound, customers of the ACR cohort who came back within it), cumulative
    returns_cohort: int  # the ACR cohort (every candidate, any tier): the base of the return shares


def parse_windows(text: str) -> tuple[int, ...]:
    """``1h,1d,3d,7d`` -> the windows in µs, sorted, without repeats; at most MAX_WINDOWS."""
    words = [word for word in text.replace(" ", ",").split(",") if word]
    if not words:
        raise UserError(f"windows {text!r}: give a list such as {DEFAULT_WINDOWS}")
    windows = sorted({parse_window(word) for word in words})
    if len(windows) > MAX_WINDOWS:
        raise UserError(f"windows {text!r}: at most {MAX_WINDOWS} windows")
    return tuple(windows)


def window_sensitivity(
    source: Source,
    query: MetricQuery,
    windows_us: Sequence[int],
    zone: tzinfo,
    compute_fn: Callable[[Source, MetricQuery, tzinfo], MetricResult],
    quick: QuickReturnsSource | None = None,
) -> WindowSensitivity:
    """The rates of ``query`` (its metric, filters and period) for each window, on one cohort; ``compute_fn`` is
    ``metrics.engine.compute`` (or a wrapper of it). With ``quick`` (the store), windows under a day are the
    1-day counts plus the quick returns (see the module's docstring); without it each is counted on its own."""
    cohort_us = max(*windows_us, *RETURN_BOUNDS_US)
    until_us = clip_until(query.until_us, query.as_of_us)
    asked: dict[tuple[Metric, int], Counts] = {}

    def counts(metric: Metric, window_us: int) -> Counts:
        if (metric, window_us) not in asked:
            shifted = replace(
                query, metric=metric, window_us=window_us, as_of_us=query.as_of_us - cohort_us + window_us, by=None
            )
            total = compute_fn(source, replace(shifted, until_us=until_us), zone).total
            asked[metric, window_us] = Counts(total.matured, total.resolved)  # a cohort has nothing pending
        return asked[metric, window_us]

    if quick is not None:
        wanted: dict[Metric, set[int]] = {query.metric: set(windows_us), "acr": set(RETURN_BOUNDS_US)}
        for metric, windows in wanted.items():
            short = tuple(sorted(w for w in windows if w < QUICK_RETURN_US))
            if not short:
                continue
            day = counts(metric, QUICK_RETURN_US)
            spec = QuickReturns(metric, query.filters, query.since_us, until_us, query.as_of_us - cohort_us, short)
            for window, later in zip(short, quick.quick_returns(spec), strict=True):
                asked[metric, window] = Counts(day.matured, day.resolved + later)
    rates = [(window, counts(query.metric, window)) for window in windows_us]
    returns: list[tuple[int, int]] = []
    cohort = 0
    for bound in RETURN_BOUNDS_US:
        within = counts("acr", bound)
        cohort = within.matured
        returns.append((bound, within.matured - within.resolved))
    return WindowSensitivity(query, query.since_us, until_us, cohort_us, rates, returns, cohort)

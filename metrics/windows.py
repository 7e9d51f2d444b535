"""Window sensitivity: the rate for several repeat windows on the *same* contacts, and how soon customers return.

A rate with a 1-hour window over the last 30 days and one with a 7-day window are not comparable as asked
separately: each scores the contacts matured for its own window, so the 7-day rate leaves out the latest week.
Here every window scores one cohort, the candidates matured for the longest window (W*). The engine already
answers that: for a window w asked as of ``as_of - W* + w``, "matured" (e + w <= as_of - W* + w) is exactly
e + W* <= as_of, and whether a contact has a repeat within w does not depend on as_of. So each window is one
ordinary question (from the rollups for their windows, from contacts for the others), no new query kind.

Time to return (first repeat start - end): within b is "not resolved with window b" for ACR, on the same cohort.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import TypeVar

from metrics.definitions import clip_until
from metrics.errors import UserError
from metrics.periods import parse_window
from metrics.query import Counts, Metric, MetricQuery, MetricResult
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, US_PER_MINUTE

Source = TypeVar("Source")
DEFAULT_WINDOWS = "1h,1d,3d,7d"
# The time-to-return distribution's bounds: dropped-call callbacks, same hour, same day, the usual windows.
RETURN_BOUNDS_US = (10 * US_PER_MINUTE, US_PER_HOUR, US_PER_DAY, 3 * US_PER_DAY, 7 * US_PER_DAY)
MAX_WINDOWS = 8


@dataclass(frozen=True, slots=True)
class WindowSensitivity:
    """The cohort (candidates matured for ``cohort_window_us``), each window's counts on it, and the returns."""

    query: MetricQuery  # as asked (its window is ignored)
    since_us: int
    until_us: int  # clipped to as_of
    cohort_window_us: int
    windows: list[tuple[int, Counts]]  # (window, counts): matured = the cohort, resolved = no repeat within it
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
) -> WindowSensitivity:
    """The rates of ``query`` (its metric, filters and period) for each window, on one cohort; ``compute_fn`` is
    ``metrics.engine.compute`` (or a wrapper of it)."""
    cohort_us = max(*windows_us, *RETURN_BOUNDS_US)
    until_us = clip_until(query.until_us, query.as_of_us)

    def counts(metric: Metric, window_us: int) -> Counts:
        asked = replace(
            query, metric=metric, window_us=window_us, as_of_us=query.as_of_us - cohort_us + window_us, by=None
        )
        return compute_fn(source, replace(asked, until_us=until_us), zone).total

    rates = [(window, counts(query.metric, window)) for window in windows_us]
    acr = {window: c for window, c in rates} if query.metric == "acr" else {}
    returns: list[tuple[int, int]] = []
    cohort = 0
    for bound in RETURN_BOUNDS_US:
        within = acr.get(bound) or counts("acr", bound)
        cohort = within.matured
        returns.append((bound, within.matured - within.resolved))
    return WindowSensitivity(query, query.since_us, until_us, cohort_us, rates, returns, cohort)

"""Is a change real? The change between two periods' rates, and distances to a target. Pure, no I/O.

CONTRACT section 2: the change is the difference of the rates in percentage points, tested with the two-sided
two-proportion z-test with the pooled rate, significant when p < 0.05. docs/metrics.md works one example by hand;
tests/test_significance.py holds this to scipy's chi-square test of the 2x2 table (the same test: z² = χ²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from metrics.query import Counts, MetricQuery

SIGNIFICANCE_LEVEL = 0.05
# The previous period "has far less data" when the data starts inside it and it has matured fewer than this
# share of the current period's matured contacts: comparing would then mostly measure when the data starts.
FAR_LESS_DATA_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Change:
    """How a rate moved from ``before`` to ``now``.

    ``points``, ``p_value`` and ``significant`` are None when either period has no matured contact
    (no rate, so nothing to compare).
    """

    points: float | None
    p_value: float | None
    significant: bool | None


def two_proportion_p_value(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test; None when either side has no trials.

    With the pooled rate at 0 or 1 both rates are equal and have no variance: p = 1 (no evidence of a change).
    """
    if trials_a <= 0 or trials_b <= 0:
        return None
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    if pooled <= 0.0 or pooled >= 1.0:
        return 1.0
    standard_error = math.sqrt(pooled * (1.0 - pooled) * (1.0 / trials_a + 1.0 / trials_b))
    z = (successes_a / trials_a - successes_b / trials_b) / standard_error
    return math.erfc(abs(z) / math.sqrt(2.0))  # = 2 * (1 - Φ(|z|)), without the cancellation near p = 0


def change_between(now: Counts, before: Counts) -> Change:
    """The change from ``before`` to ``now`` (matured and resolved counts), with its significance."""
    p_value = two_proportion_p_value(now.resolved, now.matured, before.resolved, before.matured)
    if p_value is None or now.rate is None or before.rate is None:
        return Change(None, None, None)
    return Change((now.rate - before.rate) * 100.0, p_value, p_value < SIGNIFICANCE_LEVEL)


def far_less_data(now: Counts, before: Counts, data_since_us: int | None, before_since_us: int) -> bool:
    """Whether the previous period is mostly before the data starts, so a comparison would mislead.

    ``data_since_us`` is the start of the earliest stored contact (None: no data). True when the data starts
    after the previous period began and that period has matured less than FAR_LESS_DATA_SHARE of ``now``'s.
    """
    if data_since_us is None or data_since_us <= before_since_us:
        return False
    return before.matured < FAR_LESS_DATA_SHARE * now.matured


def target_distance_points(rate: float | None, target: float | None) -> float | None:
    """How far ``rate`` is from ``target`` (both fractions) in percentage points; positive when above."""
    if rate is None or target is None:
        return None
    return (rate - target) * 100.0


def previous_query(query: MetricQuery, since_us: int, until_us: int) -> MetricQuery:
    """The same question over the period of the same length just before ``[since, until)`` (totals only)."""
    length = until_us - since_us
    return replace(query, since_us=since_us - length, until_us=since_us, by=None)


# --- confidence-aware ranking ------------------------------------------------------------------------------
# Worst first by the upper end of the Wilson 95% interval: a row tops the list only when even the most favourable
# reading of its sample is low, so 3 of 4 (upper 95%) never outranks 1,400 of 1,900 (upper 76%). Best first by the
# lower end, likewise. Why Wilson rather than empirical-Bayes shrinkage: it needs no prior estimated from the other
# rows (unstable with a handful of teams, and it would change one agent's place when another's data changes), it is
# the interval every reply already shows, and it is exact at 0% and 100%. docs/metrics.md says the same.


def worst_first_key(counts: Counts) -> tuple[bool, float, int]:
    """Sort key, worst first: rows with no data last; then the Wilson upper bound; then the larger sample."""
    interval = counts.interval
    return (interval is None, interval[1] if interval is not None else 0.0, -counts.matured)


def best_first_key(counts: Counts) -> tuple[bool, float, int]:
    """Sort key, best first: rows with no data last; then the Wilson lower bound, highest first."""
    interval = counts.interval
    return (interval is None, -interval[0] if interval is not None else 0.0, -counts.matured)


def versus_rest(row: Counts, scope: Counts) -> str | None:
    """``"below"`` / ``"above"`` when the row's rate differs significantly (p < 0.05, the same z-test) from the
    rest of the scope (the scope's counts without the row's, so the row is not compared with itself); else None."""
    change = change_between(row, rest_of(scope, row))
    if not change.significant or change.points is None:
        return None
    return "below" if change.points < 0 else "above"


def rest_of(scope: Counts, part: Counts) -> Counts:
    """The scope's counts without ``part`` (``part`` is inside ``scope``): what a row is compared with."""
    return Counts(scope.matured - part.matured, scope.resolved - part.resolved, scope.pending - part.pending)

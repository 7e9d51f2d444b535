"""The shape of a metric question and of its answer, shared by the engine, the CLI, Slack and the scheduler."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Metric = Literal["acr", "tier1"]
Dimension = Literal["agent", "team", "queue", "channel", "reason"]
# A filter narrows the candidates: a dimension, or the tier (its value as decimal text, e.g. "2").
Filter = Literal[Dimension, "tier"]
Breakdown = Literal["agent", "team", "queue", "channel", "reason", "day", "week", "month"]
# Breakdowns whose rows are periods (a time series, in date order), not dimension values.
PeriodBreakdown = Literal["day", "week", "month"]
METRICS: tuple[Metric, ...] = ("acr", "tier1")
DIMENSIONS: tuple[Dimension, ...] = ("agent", "team", "queue", "channel", "reason")
BREAKDOWNS: tuple[Breakdown, ...] = ("agent", "team", "queue", "channel", "reason", "day", "week", "month")
PERIOD_BREAKDOWNS: tuple[PeriodBreakdown, ...] = ("day", "week", "month")
Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion; None with no trials (a rate with no data has no interval).

    Wilson rather than the normal approximation because it stays inside [0, 1] and behaves at small samples
    and at rates near 0% or 100%, which is exactly where a supervisor looks.
    """
    if trials <= 0:
        return None
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    margin = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return (max(0.0, centre - margin), min(1.0, centre + margin))


@dataclass(frozen=True, slots=True)
class Counts:
    """The counts behind one rate. ``pending`` contacts are reported, never scored."""

    matured: int = 0
    resolved: int = 0
    pending: int = 0

    @property
    def rate(self) -> float | None:
        """resolved / matured, or None ("no data") when nothing has matured: never 0 by default."""
        return self.resolved / self.matured if self.matured else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.resolved, self.matured)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.matured + other.matured, self.resolved + other.resolved, self.pending + other.pending)


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One question: a metric over a scope, window and period, as of an instant (all instants in µs UTC).

    ``until_us`` is exclusive and not yet clipped: the engine clips it to ``as_of_us``.
    """

    metric: Metric
    window_us: int
    since_us: int
    until_us: int
    as_of_us: int
    filters: tuple[tuple[Filter, str], ...] = ()
    by: Breakdown | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a breakdown: its key (a dimension value; a local date YYYY-MM-DD for ``day``, the Monday
    for ``week``, YYYY-MM for ``month``)."""

    key: str
    counts: Counts


@dataclass(frozen=True, slots=True)
class MetricResult:
    """The answer: the total over the scope, and the breakdown rows when ``by`` was asked."""

    query: MetricQuery
    since_us: int
    until_us: int  # clipped to as_of
    total: Counts
    rows: list[Row] = field(default_factory=list)

"""Charts as PNG bytes (matplotlib, Agg): the trend of a rate per period and a breakdown's rates. Pure, no I/O.

Used by the Slack answers (``chart``, ``by:day|week|month``) and by the scheduler's digests, so both draw small
samples the same way: a period with fewer matured contacts than ``min_sample`` is a hollow marker off the line,
without a band, so a rate of 7 of 7 is never drawn as a 100% spike of the trend.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from metrics.query import Counts, Metric

COLORS = ("#1f6feb", "#d97706")
TARGET_COLOR = "#15803d"


@dataclass(frozen=True, slots=True)
class Series:
    """One rate over the periods: its label and the counts of each period (in the order of the labels)."""

    label: str
    counts: Sequence[Counts]
    band: bool = True  # draw the 95% interval as a band


@dataclass(frozen=True, slots=True)
class Target:
    label: str
    rate: float  # a fraction


TARGET_NAMES: dict[Metric, str] = {"acr": "ACR", "tier1": "Tier-1"}


def target_lines(targets: Mapping[Metric, float | None]) -> tuple[Target, ...]:
    """A dashed line per metric whose target is set (TARGET_ACR / TARGET_TIER1, as fractions): ``Tier-1 target
    70%``; a metric without a target draws none."""
    return tuple(
        Target(f"{TARGET_NAMES[metric]} target {rate * 100:g}%", rate)
        for metric, rate in targets.items()
        if rate is not None
    )


@dataclass(frozen=True, slots=True)
class TrendChart:
    """What a trend chart shows: periods (``YYYY-MM-DD`` days or weeks, ``YYYY-MM`` months), rates, targets."""

    title: str
    periods: Sequence[str]
    series: Sequence[Series]
    targets: Sequence[Target] = ()
    min_sample: int = 30
    maturing: Sequence[bool] = field(default_factory=tuple)  # periods whose rate may still change


def period_label(key: str) -> str:
    """``2026-03-02`` -> ``Mar 02``; ``2026-03`` -> ``Mar 2026``."""
    if len(key) == 7:
        return date.fromisoformat(key + "-01").strftime("%b %Y")
    return date.fromisoformat(key).strftime("%b %d")


def split_small(counts: Sequence[Counts], min_sample: int) -> tuple[list[float], list[tuple[int, float]]]:
    """The line's points in percent (NaN, a gap, for a period without ``min_sample`` matured contacts) and the
    hollow markers (index, percent) of the periods with some matured contacts, but fewer."""
    line = [_percent(c) if c.matured >= min_sample else math.nan for c in counts]
    hollow = [(i, _percent(c)) for i, c in enumerate(counts) if 0 < c.matured < min_sample]
    return line, hollow


def trend_png(chart: TrendChart) -> bytes:
    """The chart as PNG bytes."""
    figure, axes = _figure()
    x = list(range(len(chart.periods)))
    lows: list[float] = []
    highs: list[float] = []
    for index, series in enumerate(chart.series):
        color = COLORS[index % len(COLORS)]
        solid, small = split_small(series.counts, chart.min_sample)
        axes.plot(x, solid, label=series.label, color=color, marker="o", markersize=3.5, linewidth=1.8)
        if small:
            axes.plot(
                [i for i, _ in small],
                [rate for _, rate in small],
                linestyle="none",
                marker="o",
                markersize=5,
                markerfacecolor="white",
                markeredgecolor=color,
                label=f"fewer than {chart.min_sample} matured",
            )
        if series.band:
            band = [c.interval if c.matured >= chart.min_sample else None for c in series.counts]
            low = [b[0] * 100 if b else math.nan for b in band]
            high = [b[1] * 100 if b else math.nan for b in band]
            axes.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0, label="95% interval")
            lows.extend(v for v in low if not math.isnan(v))
            highs.extend(v for v in high if not math.isnan(v))
        values = [v for v in solid if not math.isnan(v)]  # a hollow point outside this range is left out
        lows.extend(values)
        highs.extend(values)
    for target in chart.targets:  # labelled on the line itself: two targets must not be told apart by a legend
        axes.axhline(target.rate * 100, color=TARGET_COLOR, linestyle="--", linewidth=1.2)
        axes.annotate(
            target.label,
            (0, target.rate * 100),
            xycoords=("axes fraction", "data"),
            xytext=(4, 2),
            textcoords="offset points",
            color=TARGET_COLOR,
            fontsize=8,
        )
        lows.append(target.rate * 100)
        highs.append(target.rate * 100)
    maturing = [i for i, flag in enumerate(chart.maturing) if flag]
    if maturing:
        axes.axvspan(min(maturing) - 0.5, max(maturing) + 0.5, color="#9ca3af", alpha=0.18, label="still maturing")
    ticks = x[:: max(1, math.ceil(len(x) / 8))]
    axes.set_xticks(ticks, [period_label(chart.periods[i]) for i in ticks])
    axes.set_xlim(-0.5, max(len(x) - 0.5, 0.5))
    _finish(figure, axes, chart.title, lows, highs)
    return _png(figure)


@dataclass(frozen=True, slots=True)
class BarChart:
    """A breakdown's rates, one bar per row (worst first, as in the table), with interval whiskers."""

    title: str
    rows: Sequence[tuple[str, Counts]]
    targets: Sequence[Target] = ()
    min_sample: int = 30


def bars_png(chart: BarChart) -> bytes:
    """The breakdown as horizontal bars; rows with fewer than ``min_sample`` matured are hollow."""
    figure, axes = _figure(height=max(2.4, 0.32 * len(chart.rows) + 1.2))
    rows = [(name, counts) for name, counts in chart.rows if counts.rate is not None]
    y = list(range(len(rows)))[::-1]
    for position, (_name, counts) in zip(y, rows, strict=True):
        small = counts.matured < chart.min_sample
        interval = counts.interval
        assert interval is not None
        axes.barh(
            position,
            _percent(counts),
            color="white" if small else COLORS[0],
            edgecolor=COLORS[0],
            height=0.6,
        )
        axes.plot([interval[0] * 100, interval[1] * 100], [position, position], color="#374151", linewidth=1)
    for target in chart.targets:
        axes.axvline(target.rate * 100, color=TARGET_COLOR, linestyle="--", linewidth=1.2, label=target.label)
    axes.set_yticks(y, [_short(name) for name, _ in rows])
    axes.set_xlim(0, 100)
    axes.set_xlabel("%")
    axes.grid(True, axis="x", alpha=0.3)
    axes.set_title(chart.title, fontsize=10)
    if chart.targets:
        axes.legend(loc="lower right", fontsize=8, frameon=False)
    figure.tight_layout()
    return _png(figure)


def _figure(height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, height), dpi=100)
    return figure, figure.add_subplot()


def _finish(figure: Any, axes: Any, title: str, lows: list[float], highs: list[float]) -> None:
    """Axis from a little below the lowest value to a little above the highest (within 0-100): the changes a
    supervisor looks for are a few points, invisible on a 0-100 axis."""
    low = max(0.0, math.floor((min(lows) - 5) / 5) * 5) if lows else 0.0
    high = min(100.0, math.ceil((max(highs) + 5) / 5) * 5) if highs else 100.0
    axes.set_ylim(low, max(high, low + 10))
    axes.set_ylabel("%")
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower left", fontsize=8, frameon=False, ncols=3)
    figure.tight_layout()


def _png(figure: Any) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def _percent(counts: Counts) -> float:
    return math.nan if counts.rate is None else counts.rate * 100


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"

"""The daily digest's trend chart: daily ACR and tier-1 rate over the last 30 days, as a PNG (``bot.charts``).

A day with fewer than ``min_sample`` matured contacts is a hollow marker off the line (``bot.charts``), so a day
that rests on 7 contacts is never a 100% spike of the trend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.charts import Series, TrendChart, target_lines, trend_png
from bot.scheduler.digest import DayPoint
from metrics.query import Metric

SMALL_DAY = 30  # matured contacts below which a day is drawn hollow, off the line (DIGEST_MIN_SAMPLE's default)


def trend_chart(
    days: Sequence[DayPoint],
    title: str,
    min_sample: int = SMALL_DAY,
    targets: Mapping[Metric, float | None] | None = None,
) -> bytes:
    """The PNG bytes. Days still maturing (some contacts pending) are shaded: their rates can still change;
    ``targets`` (fractions by metric) are dashed lines."""
    return trend_png(
        TrendChart(
            title=title,
            periods=[d.day.isoformat() for d in days],
            series=[
                Series("ACR (7-day window)", [d.acr for d in days], band=False),
                Series("Tier-1 resolution", [d.tier1 for d in days], band=False),
            ],
            targets=target_lines(targets or {}),
            min_sample=min_sample,
            maturing=[d.acr.pending > 0 for d in days],
        )
    )

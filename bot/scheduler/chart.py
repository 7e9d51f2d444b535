"""The digest's trend chart: daily ACR and tier-1 rate over the last 30 days, as a PNG (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from bot.scheduler.digest import DayPoint

SMALL_DAY = 5  # matured contacts below which a day's point is not drawn (a rate of 1 of 2 is noise)


def trend_chart(days: Sequence[DayPoint], title: str) -> bytes:
    """The PNG bytes. Days still maturing (some contacts pending) are shaded: their rates can still change."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, thread-safe enough for one figure at a time
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.6), dpi=100)
    axes = figure.add_subplot()
    x = list(range(len(days)))
    for label, values, color in (
        ("ACR (7-day window)", [_rate(d.acr) for d in days], "#1f6feb"),
        ("Tier-1 resolution", [_rate(d.tier1) for d in days], "#d97706"),
    ):
        axes.plot(x, values, label=label, color=color, marker="o", markersize=3, linewidth=1.8)
    maturing = [i for i, d in enumerate(days) if d.acr.pending > 0]
    if maturing:
        axes.axvspan(min(maturing) - 0.5, max(maturing) + 0.5, color="#9ca3af", alpha=0.18, label="still maturing")
    ticks = x[:: max(1, len(days) // 8)]
    axes.set_xticks(ticks, [days[i].day.strftime("%b %d") for i in ticks])
    axes.set_ylim(0, 100)
    axes.set_ylabel("%")
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower left", fontsize=8, frameon=False, ncols=3)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def _rate(counts: object) -> float:
    from metrics.query import Counts

    assert isinstance(counts, Counts)
    if counts.matured < SMALL_DAY or counts.rate is None:
        return float("nan")
    return counts.rate * 100

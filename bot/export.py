"""An answer as a CSV file for a spreadsheet or a slide: ``export`` in Slack and ``acr-bot report --format csv``.

Slide-ready: the dimension's name as the first header (``agent``, ``week``; ``scope`` for a total), what was asked
on every line (metric, window, period, as of, in BOT_TIMEZONE), rates and interval bounds as percentages with one
decimal (empty when there is no data), and plain counts. Pure, no I/O.
"""

from __future__ import annotations

import csv
import io
from datetime import tzinfo

from metrics.periods import format_window, local_midnight_us
from metrics.query import Counts, MetricResult
from metrics.timeutil import from_us

METRIC_NAMES = {"acr": "ACR", "tier1": "Tier-1 resolution"}
COLUMNS = ("metric", "window", "period", "as of", "rate %", "95% low %", "95% high %", "matured", "resolved", "pending")


def export_csv(result: MetricResult, zone: tzinfo) -> str:
    """One line per row of the breakdown (every row, in the engine's order), or one line for the total."""
    query = result.query
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([query.by or "scope", *COLUMNS])
    fixed = [METRIC_NAMES[query.metric], format_window(query.window_us), period_text(result, zone)]
    fixed.append(f"{from_us(query.as_of_us, zone):%Y-%m-%d %H:%M %Z}")
    if query.by is None:
        scope = ", ".join(f"{name} {value}" for name, value in query.filters) or "all agents"
        lines = [(scope, result.total)]
    else:
        lines = [(row.key, row.counts) for row in result.rows]
    for key, counts in lines:
        writer.writerow([key, *fixed, *_numbers(counts)])
    return out.getvalue()


def period_text(result: MetricResult, zone: tzinfo) -> str:
    """``2026-03-02 to 2026-03-08`` for whole local days (last day inclusive), else local times."""
    start, end = from_us(result.since_us, zone), from_us(result.until_us, zone)
    if (
        local_midnight_us(start.date(), zone) == result.since_us
        and local_midnight_us(end.date(), zone) == result.until_us
    ):
        last = from_us(result.until_us - 1, zone).date()
        return start.date().isoformat() if last == start.date() else f"{start.date()} to {last}"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


def _numbers(counts: Counts) -> list[str | int]:
    interval = counts.interval
    rate = counts.rate
    return [
        "" if rate is None else f"{rate * 100:.1f}",
        "" if interval is None else f"{interval[0] * 100:.1f}",
        "" if interval is None else f"{interval[1] * 100:.1f}",
        counts.matured,
        counts.resolved,
        counts.pending,
    ]

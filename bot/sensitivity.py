"""Window sensitivity as people read it: ``/acr windows`` in Slack and ``acr-bot report --windows`` (text, JSON,
CSV). Pure, no I/O; the numbers come from ``metrics.windows``."""

from __future__ import annotations

import csv
import io
from datetime import tzinfo
from typing import Any

from bot.presentation import interval_span, percent, period_words
from metrics.periods import format_window
from metrics.timeutil import US_PER_SECOND, iso_utc
from metrics.windows import WindowSensitivity

METRIC_NAMES = {"acr": "ACR", "tier1": "Tier-1 resolution"}


def window_name(window_us: int) -> str:
    """``10m`` -> ``10 min``, ``1h`` -> ``1 h``, ``3d`` -> ``3 d``: short, for a table's first column."""
    word = format_window(window_us)
    number, unit = word[:-1], word[-1]
    return f"{number} {'min' if unit == 'm' else unit}"


def headline(found: WindowSensitivity, zone: tzinfo) -> str:
    """What the cohort is: ``2,345 contacts of all agents ... matured for 7 days (ended by ...)``."""
    cohort = found.windows[0][1].matured if found.windows else 0
    kind = "tier-1 contacts" if found.query.metric == "tier1" else "contacts"
    return (
        f"{cohort:,} {kind} started {period_words(found.since_us, found.until_us, zone)} and matured for "
        f"{format_window(found.cohort_window_us)}: every window below scores these same contacts."
    )


def rate_lines(found: WindowSensitivity) -> list[str]:
    """The rate per window, as a monospaced table about 50 characters wide."""
    lines = [f"{'window':<8}{'rate':>8}  {'95% interval':>13}  {'resolved':>10}"]
    for window_us, counts in found.windows:
        lines.append(
            f"{window_name(window_us):<8}{percent(counts.rate):>8}  {interval_span(counts, none='–'):>13}  "
            f"{counts.resolved:>10,}"
        )
    return lines


def return_lines(found: WindowSensitivity) -> list[str]:
    """How soon customers came back: each band and cumulative, as shares of the ACR cohort."""
    base = found.returns_cohort
    lines = [f"{'came back':<16}{'contacts':>10}{'share':>8}{'by then':>9}"]
    previous_bound, previous_count = None, 0
    for bound_us, count in found.returns:
        label = (
            f"under {window_name(bound_us)}"
            if previous_bound is None
            else f"{window_name(previous_bound)}–{window_name(bound_us)}"
        )
        band = count - previous_count
        lines.append(f"{label:<16}{band:>10,}{_share(band, base):>8}{_share(count, base):>9}")
        previous_bound, previous_count = bound_us, count
    if previous_bound is not None:
        later = base - previous_count
        lines.append(f"{'not within ' + window_name(previous_bound):<16}{later:>10,}{_share(later, base):>8}{'':>9}")
    return lines


def as_json(found: WindowSensitivity) -> dict[str, Any]:
    query = found.query
    return {
        "metric": query.metric,
        "since": iso_utc(found.since_us),
        "until": iso_utc(found.until_us),
        "as_of": iso_utc(query.as_of_us),
        "filters": dict(query.filters),
        "cohort_window": format_window(found.cohort_window_us),
        "matured": found.windows[0][1].matured if found.windows else 0,
        "windows": [
            {
                "window": format_window(window_us),
                "window_seconds": window_us // US_PER_SECOND,
                "resolved": counts.resolved,
                "rate": counts.rate,
                "ci_low": None if counts.interval is None else counts.interval[0],
                "ci_high": None if counts.interval is None else counts.interval[1],
            }
            for window_us, counts in found.windows
        ],
        "returned": {
            "contacts": found.returns_cohort,
            "within": [
                {"window": format_window(bound), "window_seconds": bound // US_PER_SECOND, "contacts": count}
                for bound, count in found.returns
            ],
        },
    }


def as_csv(found: WindowSensitivity) -> str:
    """One line per window, slide-ready like ``export``: percentages with one decimal, plain counts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["window", "metric", "cohort window", "rate %", "95% low %", "95% high %", "matured", "resolved"])
    for window_us, counts in found.windows:
        interval = counts.interval
        writer.writerow(
            [
                format_window(window_us),
                METRIC_NAMES[found.query.metric],
                format_window(found.cohort_window_us),
                "" if counts.rate is None else f"{counts.rate * 100:.1f}",
                "" if interval is None else f"{interval[0] * 100:.1f}",
                "" if interval is None else f"{interval[1] * 100:.1f}",
                counts.matured,
                counts.resolved,
            ]
        )
    return out.getvalue()


def _share(part: int, whole: int) -> str:
    return "–" if whole == 0 else f"{part / whole * 100:.1f}%"

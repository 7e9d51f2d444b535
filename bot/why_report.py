"""What every surface shows for ``why`` (the command line, Slack and its CSV file): the summary of what drives a
number, the rows, the slide-ready CSV, masked customer ids and links to the platform's record. Pure, no I/O.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import tzinfo
from typing import TypeVar
from urllib.parse import quote

from metrics.query import Counts, Metric
from metrics.timeutil import from_us, iso_utc
from metrics.why import NO_REASON, Cause, WhyRow, WhySummary

K = TypeVar("K")
TOP_REASONS = 5
CAUSE_WORDS: dict[Cause, str] = {"escalated": "escalated", "not_resolved": "marked not resolved", "repeat": "came back"}
CSV_HEADERS = (
    "Started",
    "Contact",
    "Source",
    "Customer",
    "Agent",
    "Team",
    "Queue",
    "Channel",
    "Reason",
    "Why it failed",
    "Came back (contact)",
    "Came back at",
    "Came back via",
    "Came back for",
    "Came back to (agent)",
    "Hours to return",
)


def mask(customer_id: str) -> str:
    """A customer id shown without giving it away: the first two and last two characters (``ma•••••om``); a
    short id entirely hidden. Enough to tell two rows apart, not enough to contact anyone."""
    if len(customer_id) <= 6:
        return "•" * len(customer_id)
    return customer_id[:2] + "•" * (len(customer_id) - 4) + customer_id[-2:]


def contact_url(template: str | None, source: str, contact_id: str) -> str | None:
    """CONTACT_URL_TEMPLATE with ``{id}`` (and ``{source}``) filled in, URL-encoded; None without a template."""
    if not template:
        return None
    return template.replace("{id}", quote(contact_id, safe="")).replace("{source}", quote(source, safe=""))


def duration_words(seconds: float) -> str:
    """``45 minutes``, ``3.2 hours``, ``2.1 days`` (negative: the customer was back before the contact ended)."""
    size = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if size < 3600:
        return f"{sign}{size / 60:.0f} minutes"
    if size < 2 * 86_400:
        return f"{sign}{size / 3600:.1f} hours"
    return f"{sign}{size / 86_400:.1f} days"


def ranked(counter: Counter[K]) -> list[tuple[K, int]]:
    """Most first; ties in name order, so the same data always reads the same."""
    return sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))


def _share(part: int, whole: int) -> str:
    return f"{part / whole * 100:.0f}% ({part:,} of {whole:,})" if whole else "none"


def summary_lines(summary: WhySummary, matured: int, by_reason: dict[str, Counts]) -> list[str]:
    """What drives the failures, in words: causes (tier-1), the reasons customers came back with, the failed
    contacts' own reasons with each reason's rate, same reason / other channel, and the time to return."""
    noun = "matured tier-1 contacts" if summary.metric == "tier1" else "matured contacts"
    lines = [f"{summary.rows:,} of {matured:,} {noun} were not resolved."]
    if not summary.rows:
        return lines
    if summary.metric == "tier1":
        causes = ", ".join(f"{CAUSE_WORDS[cause]} {summary.causes[cause]:,}" for cause in CAUSE_WORDS)
        lines.append(f"Why they failed (a contact can have several causes): {causes}.")
    if summary.repeats:
        top = ranked(summary.came_back_with)[:TOP_REASONS]
        back = "; ".join(f"{reason} {_share(count, summary.repeats)}" for reason, count in top)
        lines.append(f"Came back with (the repeat contact's reason, by failures explained): {back}.")
    failed = []
    for reason, count in ranked(summary.failed_reasons)[:TOP_REASONS]:
        counts = by_reason.get(reason)
        rate = (
            "" if counts is None or counts.rate is None else f", rate {counts.rate * 100:.1f}% (n={counts.matured:,})"
        )
        failed.append(f"{reason} {count:,} failed{rate}")
    lines.append(f"Reasons of the contacts that failed: {'; '.join(failed)}.")
    if summary.repeats:
        moves = ", ".join(f"{a} → {b} {n:,}" for (a, b), n in ranked(summary.channel_moves)[:3])
        lines.append(
            f"Came back for the same reason: {_share(summary.same_reason, summary.repeats)}; through another "
            f"channel: {_share(summary.other_channel, summary.repeats)}" + (f" ({moves})." if moves else ".")
        )
        quartiles = summary.quartiles()
        assert quartiles is not None
        low, median, high = quartiles
        lines.append(
            f"Time to return: median {duration_words(median)} "
            f"(quartiles {duration_words(low)} to {duration_words(high)})."
        )
    return lines


def row_cells(row: WhyRow, zone: tzinfo, show_customer: Callable[[str], str]) -> list[str]:
    """One row in CSV_HEADERS' order: local times, the causes in words, hours to return with 2 decimals."""
    repeat = row.repeat
    cells = [
        _local(row.started_us, zone),
        row.id,
        row.source,
        show_customer(row.customer_id),
        row.agent,
        row.team or "",
        row.queue or "",
        row.channel,
        row.reason or "",
        ", ".join(CAUSE_WORDS[cause] for cause in row.causes),
    ]
    if repeat is None:
        cells += [""] * 6
    else:
        cells += [
            repeat.id,
            _local(repeat.started_us, zone),
            repeat.channel,
            repeat.reason or NO_REASON,
            repeat.agent or "(no agent)",
            f"{repeat.return_seconds / 3600:.2f}",
        ]
    return cells


def csv_chunks(rows: Iterable[WhyRow], zone: tzinfo, show_customer: Callable[[str], str] = str) -> Iterator[str]:
    """The slide-ready CSV, a header then a chunk of text per 1,000 rows (streamed: a team's month stays small)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    zone_name = getattr(zone, "key", None) or str(zone)
    writer.writerow(
        [f"{header} ({zone_name})" if header in ("Started", "Came back at") else header for header in CSV_HEADERS]
    )
    for index, row in enumerate(rows, start=1):
        writer.writerow(row_cells(row, zone, show_customer))
        if index % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def row_json(row: WhyRow) -> dict[str, object]:
    """A row as the contract's JSON: instants ISO 8601 UTC, ``ended_at`` null when the record has none."""
    repeat = row.repeat
    return {
        "source": row.source,
        "id": row.id,
        "customer_id": row.customer_id,
        "agent": row.agent,
        "team": row.team,
        "queue": row.queue,
        "channel": row.channel,
        "reason": row.reason,
        "started_at": iso_utc(row.started_us),
        "ended_at": None if row.ended_us is None else iso_utc(row.ended_us),
        "causes": list(row.causes),
        "repeat": None
        if repeat is None
        else {
            "source": repeat.source,
            "id": repeat.id,
            "agent": repeat.agent,
            "channel": repeat.channel,
            "reason": repeat.reason,
            "started_at": iso_utc(repeat.started_us),
            "return_seconds": repeat.return_seconds,
        },
    }


def row_line(
    row: WhyRow,
    zone: tzinfo,
    mark: Callable[[str], str],
    show_customer: Callable[[str], str],
    show_id: Callable[[WhyRow], str],
) -> str:
    """One row for a reader: ``2026-03-02 09:00  c1  maria  ma•••om  billing  came back: c2 via chat for outage
    after 3.0 days``. Every value from data goes through ``mark`` (escaping for Slack); ``show_id`` may link."""
    repeat = row.repeat
    causes = ", ".join(CAUSE_WORDS[cause] for cause in row.causes if cause != "repeat")
    customer = mark(show_customer(row.customer_id))
    parts = [_local(row.started_us, zone), show_id(row), mark(row.agent), customer, mark(row.reason or NO_REASON)]
    text = "  ".join(parts)
    if causes:
        text += f"  {causes}"
    if repeat is not None:
        text += (
            f"  came back: {mark(repeat.id)} via {mark(repeat.channel)} for {mark(repeat.reason or NO_REASON)} "
            f"after {duration_words(repeat.return_seconds)}"
        )
    return text


def metric_noun(metric: Metric) -> str:
    return "tier-1 resolution" if metric == "tier1" else "ACR"


def _local(us: int, zone: tzinfo) -> str:
    return f"{from_us(us, zone):%Y-%m-%d %H:%M}"

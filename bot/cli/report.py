"""``acr-bot report``: one metric for a scope and period, as a table, JSON or CSV (CONTRACT section 3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any, TypeVar

import click
import orjson

from bot import sensitivity
from bot.cli.common import as_of_option, command_store, settings
from bot.clock import Clock
from bot.export import export_csv
from bot.names import resolve_names
from bot.presentation import change_words, instant_words, interval_span, percent, plain
from bot.storage import ContactStore
from metrics.engine import compute
from metrics.errors import UserError
from metrics.periods import (
    DEFAULT_LAST_DAYS,
    PERIOD_WORDS,
    calendar_period,
    format_window,
    last_period,
    matured_period,
    parse_date,
    parse_days,
    parse_tier,
    parse_window,
    word_period,
)
from metrics.query import BREAKDOWNS, METRICS, Counts, Filter, MetricQuery, MetricResult
from metrics.significance import change_between, previous_query
from metrics.timeutil import US_PER_SECOND, iso_utc
from metrics.windows import parse_windows, window_sensitivity

JSON_KEYS = (
    "metric",
    "window",
    "window_seconds",
    "since",
    "until",
    "as_of",
    "filters",
    "matured",
    "resolved",
    "pending",
    "rate",
    "ci_low",
    "ci_high",
)
F = TypeVar("F", bound=Callable[..., Any])
METRIC_TITLES = {"acr": "ACR (Active Contact Resolution)", "tier1": "Tier-1 resolution rate"}


_SCOPE_OPTIONS = (
    click.option("--agent", help="Only contacts handled by this agent (exact match)."),
    click.option("--team", help="Only contacts of this team."),
    click.option("--queue", help="Only contacts of this queue."),
    click.option("--channel", help="Only contacts of this channel (phone, chat, email, ...)."),
    click.option("--tier", "tier_text", help="Only contacts handled at this tier (1 = first line)."),
    click.option("--reason", help="Only contacts with this contact reason (exact match)."),
    click.option("--window", "window_text", default="7d", show_default=True, help="Repeat window: Nd or Nh, max 90d."),
    click.option("--last", "last_text", help="Period: the last N days before --as-of (default 30d)."),
    click.option(
        "--period", "period_word", type=click.Choice(PERIOD_WORDS), help="Period: a calendar word, in BOT_TIMEZONE."
    ),
    click.option("--matured", "matured_text", help="Period: the latest N days whose window has closed (e.g. 7d)."),
    click.option("--since", "since_text", help="Period start: a calendar day YYYY-MM-DD in BOT_TIMEZONE (inclusive)."),
    click.option("--until", "until_text", help="Period end: a calendar day YYYY-MM-DD in BOT_TIMEZONE (inclusive)."),
)


def scope_options(command: F) -> F:
    """The scope, window and period options, the same for ``report`` and ``why`` (read with ``build_query``)."""
    for option in reversed(_SCOPE_OPTIONS):
        command = option(command)
    return command


@click.command("report")
@click.argument("metric", type=click.Choice(METRICS))
@scope_options
@click.option(
    "--by", type=click.Choice(BREAKDOWNS), help="Break the result down by this dimension, or by day, week or month."
)
@click.option(
    "--windows",
    "windows_text",
    help="Window sensitivity instead: the rate for these windows (e.g. 10m,1h,1d,7d) on the same matured "
    "contacts, and how soon customers came back.",
)
@as_of_option("'Now' for the report (a timestamp; default: the current time).")
@click.option(
    "--compare",
    is_flag=True,
    help="Also the period of the same length just before, with the change in points and its significance.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("text", "json", "csv")),
    default="text",
    show_default=True,
    help="text: a readable table; json: the contract's keys; csv: one line per row, rates in percent (as /acr export).",
)
def report(
    metric: str,
    agent: str | None,
    team: str | None,
    queue: str | None,
    channel: str | None,
    tier_text: str | None,
    reason: str | None,
    window_text: str,
    last_text: str | None,
    period_word: str | None,
    matured_text: str | None,
    since_text: str | None,
    until_text: str | None,
    by: str | None,
    windows_text: str | None,
    clock: Clock,
    compare: bool,
    output_format: str,
) -> None:
    """Compute METRIC (acr or tier1) for a scope and period; pending contacts are reported, never scored."""
    config = settings()
    zone = config.zone
    query = build_query(
        metric, {"agent": agent, "team": team, "queue": queue, "channel": channel, "reason": reason, "tier": tier_text},
        window_text, Period(last_text, period_word, matured_text, since_text, until_text), by, clock.now_us(), zone,
    )  # fmt: skip
    windows = parse_windows(windows_text) if windows_text is not None else ()
    if windows and by is not None:
        raise UserError("--windows compares windows on one total; it cannot be combined with --by")
    store = command_store()
    query, result = compute_asked(store, query, zone)
    if windows:
        found = window_sensitivity(store, query, windows, zone, compute, quick=store)
        if output_format == "json":
            click.echo(orjson.dumps(sensitivity.as_json(found), option=orjson.OPT_INDENT_2).decode())
        elif output_format == "csv":
            click.echo(sensitivity.as_csv(found), nl=False)
        else:
            title = f"{METRIC_TITLES[query.metric]} by repeat window — {_scope(query)}"
            lines = [title, sensitivity.headline(found, zone), "", *sensitivity.rate_lines(found), ""]
            lines += ["Time to return (first repeat after the contact ended):", *sensitivity.return_lines(found)]
            click.echo("\n".join(lines))
        return
    previous = compute(store, previous_query(query, result.since_us, result.until_us), zone) if compare else None
    if output_format == "json":
        click.echo(orjson.dumps(as_json(result, previous), option=orjson.OPT_INDENT_2).decode())
    elif output_format == "csv":
        click.echo(export_csv(result, zone), nl=False)
    else:
        click.echo(as_text(result, zone, previous))


def compute_asked(store: ContactStore, query: MetricQuery, zone: tzinfo) -> tuple[MetricQuery, MetricResult]:
    """The result of ``query``; when no contact counts, names typed in another letter case are read as the one
    stored name that matches (and the query says so)."""
    result = compute(store, query, zone)
    if result.total.matured + result.total.pending == 0:
        filters, changed = resolve_names(query.filters, store.dimension_values)
        if changed:
            query = replace(query, filters=filters)
            result = compute(store, query, zone)
    return query, result


@dataclass(frozen=True, slots=True)
class Period:
    """The period options as given (at most one kind: --last, --period, --matured, or --since/--until)."""

    last: str | None = None
    word: str | None = None
    matured: str | None = None
    since: str | None = None
    until: str | None = None

    def bounds(self, window_us: int, as_of_us: int, zone: tzinfo) -> tuple[int, int]:
        """``[since, until)`` in µs (until not yet clipped); a UserError names conflicting options."""
        given = [
            name
            for name, value in (
                ("--last", self.last),
                ("--period", self.word),
                ("--matured", self.matured),
                ("--since/--until", self.since or self.until),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise UserError(f"{' and '.join(given)} cannot be combined; use one kind of period")
        if self.word is not None:
            return word_period(self.word, as_of_us, zone)
        if self.matured is not None:
            return matured_period(parse_days(self.matured), window_us, as_of_us)
        if self.since is not None or self.until is not None:
            since_day = parse_date(self.since) if self.since is not None else None
            until_day = parse_date(self.until) if self.until is not None else None
            return calendar_period(since_day, until_day, zone, as_of_us)
        return last_period(parse_days(self.last) if self.last is not None else DEFAULT_LAST_DAYS, as_of_us)


def build_query(
    metric: str,
    filters: dict[str, str | None],
    window_text: str,
    period: Period,
    by: str | None,
    as_of_us: int,
    zone: tzinfo,
) -> MetricQuery:
    """The question the options ask; every bad option is a UserError naming it."""
    window_us = parse_window(window_text)
    since_us, until_us = period.bounds(window_us, as_of_us, zone)
    chosen: list[tuple[Filter, str]] = []
    for dimension in ("agent", "team", "queue", "channel", "reason", "tier"):
        value = filters.get(dimension)
        if value is not None:
            text = value.strip().lower() if dimension == "channel" else value.strip()
            if not text:
                raise UserError(f"--{dimension} is empty")
            if dimension == "tier":
                text = str(parse_tier(text))
            chosen.append((dimension, text))
    return MetricQuery(
        metric=metric,  # type: ignore[arg-type]
        window_us=window_us,
        since_us=since_us,
        until_us=until_us,
        as_of_us=as_of_us,
        filters=tuple(chosen),
        by=by,  # type: ignore[arg-type]
    )


def _counts_json(counts: Counts) -> dict[str, Any]:
    interval = counts.interval
    return {
        "matured": counts.matured,
        "resolved": counts.resolved,
        "pending": counts.pending,
        "rate": counts.rate,
        "ci_low": None if interval is None else interval[0],
        "ci_high": None if interval is None else interval[1],
    }


def previous_json(result: MetricResult, previous: MetricResult) -> dict[str, Any]:
    """The contract's ``"previous"``: the period before, its counts, and the change with its significance."""
    change = change_between(result.total, previous.total)
    return {
        "since": iso_utc(previous.since_us),
        "until": iso_utc(previous.until_us),
        "matured": previous.total.matured,
        "resolved": previous.total.resolved,
        "pending": previous.total.pending,
        "rate": previous.total.rate,
        "change_points": change.points,
        "p_value": change.p_value,
        "significant": change.significant,
    }


def as_json(result: MetricResult, previous: MetricResult | None = None) -> dict[str, Any]:
    """The contract's JSON: instants ISO 8601 UTC, ``until`` exclusive (and clipped to as_of); with
    ``previous`` (``--compare``) also the ``"previous"`` period."""
    query = result.query
    out: dict[str, Any] = {
        "metric": query.metric,
        "window": format_window(query.window_us),
        "window_seconds": query.window_us // US_PER_SECOND,
        "since": iso_utc(result.since_us),
        "until": iso_utc(result.until_us),
        "as_of": iso_utc(query.as_of_us),
        "filters": dict(query.filters),
        **_counts_json(result.total),
    }
    if query.by is not None:
        out["by"] = query.by
        out["rows"] = [{"key": row.key, **_counts_json(row.counts)} for row in result.rows]
    if previous is not None:
        out["previous"] = previous_json(result, previous)
    return out


def as_text(result: MetricResult, zone: tzinfo, previous: MetricResult | None = None) -> str:
    """A readable report: what was asked (so nobody guesses how options were read), then the table."""
    query = result.query
    scope = _scope(query)
    lines = [
        f"{METRIC_TITLES[query.metric]} — {scope}",
        f"window {format_window(query.window_us)}; contacts started {instant_words(result.since_us, zone)} to "
        f"{instant_words(result.until_us, zone)} (exclusive); as of {instant_words(query.as_of_us, zone)}",
        "",
    ]
    header = ("", "rate", "95% interval", "matured", "resolved", "pending")
    table: list[tuple[str, ...]] = [header]
    for row in result.rows:
        table.append(_text_row(plain(row.key), row.counts))
    table.append(_text_row("total", result.total))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for index, line in enumerate(table):
        cells = [line[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0 or (result.rows and index == len(table) - 2):
            lines.append("  ".join("-" * width for width in widths))
    if previous is not None:
        lines.append(
            f"previous {instant_words(previous.since_us, zone)} to "
            f"{instant_words(previous.until_us, zone)}: {percent(previous.total.rate)} "
            f"({previous.total.matured:,} matured); {change_words(result.total, previous.total) or 'no change to show'}"
        )
    lines.append("")
    if result.total.matured + result.total.pending == 0:
        lines.append(
            f"No contact counts here: no inbound contact with an agent{'' if not query.filters else ' and ' + scope} "
            "started in this period. Check the period (--last, --since/--until: the data you imported covers some "
            "dates only; demo data covers the 60 days before it was loaded) and the filters' spelling."
        )
    lines.append("pending = started in the period but their window has not passed yet: reported, not in the rate.")
    return "\n".join(lines)


def _scope(query: MetricQuery) -> str:
    return ", ".join(f"{d}={plain(v)}" for d, v in query.filters) or "everyone"


def _text_row(key: str, counts: Counts) -> tuple[str, ...]:
    return (
        key,
        percent(counts.rate),
        interval_span(counts),
        f"{counts.matured:,}",
        f"{counts.resolved:,}",
        f"{counts.pending:,}",
    )

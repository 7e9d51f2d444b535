"""``acr-bot why``: the contacts behind a number, with what their customers came back with (CONTRACT section 3)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import tzinfo

import click
import orjson

from bot.cli.common import as_of_option, command_store, settings
from bot.cli.report import Period, as_json, build_query, compute_asked, scope_options
from bot.clock import Clock
from bot.why_report import csv_chunks, row_json, row_line, summary_lines
from metrics.engine import compute
from metrics.query import METRICS, Counts, MetricQuery, MetricResult
from metrics.why import WhyQuery, WhyRow, WhySummary


@click.command("why")
@click.argument("metric", type=click.Choice(METRICS))
@scope_options
@as_of_option("'Now' for the question (a timestamp; default: the current time).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("text", "json", "csv")),
    default="text",
    show_default=True,
    help="text: the summary, then the rows; json: the report's keys plus every row; csv: one slide-ready line a row.",
)
def why(
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
    clock: Clock,
    output_format: str,
) -> None:
    """The contacts behind METRIC (acr or tier1): every matured contact that was not resolved, why, and what the
    customer came back with (first repeat: contact, channel, reason, time to return). Rows stream: any size."""
    config = settings()
    zone = config.zone
    query = build_query(
        metric, {"agent": agent, "team": team, "queue": queue, "channel": channel, "reason": reason, "tier": tier_text},
        window_text, Period(last_text, period_word, matured_text, since_text, until_text), None, clock.now_us(), zone,
    )  # fmt: skip
    store = command_store()
    query, result = compute_asked(store, query, zone)
    rows = store.why_rows(WhyQuery.of(query))
    if output_format == "csv":
        for chunk in csv_chunks(rows, zone):
            click.echo(chunk, nl=False)
    elif output_format == "json":
        for chunk in _json_chunks(result, rows):
            click.echo(chunk, nl=False)
    else:
        by_reason = compute(store, _by_reason(query), zone)
        click.echo(as_text(result, rows, by_reason, zone))


def _by_reason(query: MetricQuery) -> MetricQuery:
    return replace(query, by="reason")


def _json_chunks(result: MetricResult, rows: Iterator[WhyRow]) -> Iterator[str]:
    """The report's JSON with ``"rows"``, written a row at a time (one row a line)."""
    head = orjson.dumps(as_json(result)).decode()
    yield head[:-1] + ',"rows":['
    for index, row in enumerate(rows):
        yield ("\n" if index == 0 else ",\n") + orjson.dumps(row_json(row)).decode()
    yield "\n]}\n"


def as_text(result: MetricResult, rows: Iterator[WhyRow], by_reason: MetricResult, zone: tzinfo) -> str:
    """The summary first, then every row (rows are read once: summed while they are laid out)."""
    query = result.query
    summary = WhySummary(query.metric)
    laid_out = [row_line(row, zone, str, str, lambda r: r.id) for row in summary.extend(rows)]
    reasons: dict[str, Counts] = {row.key: row.counts for row in by_reason.rows}
    scope = ", ".join(f"{d}={v}" for d, v in query.filters) or "everyone"
    rate = "no data" if result.total.rate is None else f"{result.total.rate * 100:.1f}%"
    lines = [f"{'Tier-1 resolution' if query.metric == 'tier1' else 'ACR'} {rate} — {scope}"]
    lines += summary_lines(summary, result.total.matured, reasons)
    if laid_out:
        lines += ["", "started (local)   contact  agent  customer  reason  what happened", *laid_out]
    return "\n".join(lines)

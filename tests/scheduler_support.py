"""Shared by the scheduler tests: settings pointing at the fake Slack, a store with contacts, and the scheduler's
jobs wired to both with a manual clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from bot.clock import ManualClock
from bot.scheduler.delivery import Poster
from bot.scheduler.jobs import Jobs
from bot.settings import Settings, load_settings
from bot.slack.app import build_web_client
from bot.storage import ContactStore
from metrics.timeutil import to_us
from tests.fake_slack import Call, FakeSlack
from tests.slack_support import add_contacts as add_contacts

DAY_S = 86_400


def settings_for(database_url: str, fake: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "slack_bot_token": "xoxb-test",
        "slack_api_url": fake.api_url,
    }
    values.update(overrides)
    return load_settings(**values)


def jobs_for(settings: Settings, store: ContactStore, clock: ManualClock, **poster: Any) -> Jobs:
    """The scheduler's jobs exactly as ``acr-bot serve`` wires them (the real Web API client and its retries)."""
    client = build_web_client(settings)
    return Jobs(settings, store, Poster(client, store.outbox(), clock, **poster), clock)


def quick_client(settings: Settings) -> WebClient:
    """The serve client (same retry handlers) with its retry backoff shortened to 10 ms (not Retry-After,
    which the rate-limit handler always honours): keeps outage tests fast."""
    client = build_web_client(settings)
    for handler in client.retry_handlers:
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0.01)
    return client


def at(text: str, zone: Any = UTC) -> int:
    """``2026-03-08 09:00`` in ``zone`` as µs."""
    return to_us(datetime.fromisoformat(text).replace(tzinfo=zone))


def contacts_for(
    team: str, agent: str, count: int, resolved_share: float, end_s: float, *, prefix: str, span_days: float = 5
) -> list[dict[str, Any]]:
    """``count`` inbound contacts of ``agent`` ending up to ``span_days`` before ``end_s`` (epoch s); the first
    ``round((1 - resolved_share) * count)`` customers come back 1 hour later (a repeat, handled by "repeat-desk")."""
    records: list[dict[str, Any]] = []
    repeats = round((1 - resolved_share) * count)
    for i in range(count):
        start = end_s - span_days * DAY_S + i * (span_days * DAY_S / max(count, 1))
        customer = f"{prefix}-c{i}"
        records.append(
            {"id": f"{prefix}-{i}", "customer_id": customer, "agent": agent, "team": team, "channel": "phone",
             "started_at": start, "ended_at": start + 300}
        )  # fmt: skip
        if i < repeats:
            records.append(
                {"id": f"{prefix}-{i}-r", "customer_id": customer, "agent": "repeat-desk", "team": "other",
                 "channel": "phone", "started_at": start + 3600, "ended_at": start + 3900}
            )  # fmt: skip
    return records


def blocks_text(call: Call) -> str:
    return json.dumps(call.body.get("blocks", ""), ensure_ascii=False) + str(call.body.get("text", ""))

"""Shared by the scheduler tests: a fake Slack that also answers file uploads and gives each message a ``ts``,
a store with contacts, and the scheduler's jobs wired to both with a manual clock."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
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


class UploadingFakeSlack(FakeSlack):
    """``FakeSlack`` plus what ``files_upload_v2`` needs (an upload URL that accepts bytes, a completion with the
    file), and a distinct ``ts`` for every successful chat.postMessage."""

    def __init__(self) -> None:
        super().__init__()
        self._ts = itertools.count(1)
        self._ts_lock = threading.Lock()
        self._files = itertools.count(1)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if not path.startswith("/upload/"):
            super()._handle(request)
            return
        length = int(request.headers.get("Content-Length") or 0)
        data = request.rfile.read(length) if length else b""
        status, headers, _ = self._decide(path)
        with self._lock:
            body = {"bytes": len(data), "png": data.startswith(b"\x89PNG")}
            self.calls.append(Call(path, body, dict(request.headers.items()), status))
            self._lock.notify_all()
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", "2")
        request.end_headers()
        request.wfile.write(b"OK")

    def _decide(self, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        status, headers, answer = super()._decide(path)
        method = path.rsplit("/", 1)[-1]
        if status == 200 and method not in self.answers:
            if method == "chat.postMessage":
                with self._ts_lock:
                    answer = {"ok": True, "ts": f"1700000000.{next(self._ts):06d}"}
            elif method == "files.getUploadURLExternal":
                file_id = f"F{next(self._files):04d}"
                answer = {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}
            elif method == "files.completeUploadExternal":
                answer = {"ok": True, "files": [{"id": "F0001", "title": "chart"}]}
        return status, headers, answer

    def posts(self, status: int | None = 200) -> list[Call]:
        return [c for c in self.calls_to("chat.postMessage") if status is None or c.status == status]


@pytest.fixture
def fake() -> Iterator[UploadingFakeSlack]:
    with UploadingFakeSlack() as running:
        yield running


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

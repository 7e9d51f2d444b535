"""Shared by the Slack tests: a small contact set with known answers, the real server under uvicorn in a
thread, and requests signed the way Slack signs them."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from slack_sdk.signature import SignatureVerifier

from bot.clock import SystemClock
from bot.http.app import build_app
from bot.scheduler.manage import ScheduleManager
from bot.settings import Settings, load_settings
from bot.slack.answers import Answerer, Compute, Supervisors
from bot.slack.app import SlackBot, build_slack
from bot.storage import ContactStore
from metrics.engine import compute
from tests.builders import valid

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DAY = 86_400
INJECTION_AGENT = "Ann & <!channel> *bold* @here"


def seed(store: ContactStore, now: float) -> None:
    """Known answers over the last 30 days (7-day window), relative to ``now`` (epoch seconds):

    - maria (billing, refunds, phone): 10 matured, 8 without repeat (80.0%), 1 pending; one of the 8 escalated
      (tier-1: 7/10 = 70.0%).
    - bob (billing): handled the 2 repeats, both matured and without repeat (100%); 2 more in the previous
      period: 1 of 2 without repeat.
    - "maria garcia" (sales, chat): 2 matured, no repeat.
    - the injection agent (sales, chat): 3 matured, no repeat.
    """
    records: list[dict[str, Any]] = []

    def add(cid: str, customer: str, agent: str, team: str, days_ago: float, **more: Any) -> None:
        start = now - days_ago * DAY
        record: dict[str, Any] = {"id": cid, "customer_id": customer, "agent": agent, "team": team, "queue": "refunds"}
        record.update({"channel": "phone", "started_at": start, "ended_at": start + 600, **more})
        records.append(record)

    for i in range(10):
        add(f"m{i}", f"cm{i}", "maria", "billing", 20, escalated=(i == 5))
    add("b0", "cm0", "bob", "billing", 19)  # repeat of m0
    add("b1", "cm1", "bob", "billing", 19)  # repeat of m1
    add("m-pending", "cmp", "maria", "billing", 1)
    add("g0", "cg0", "maria garcia", "sales", 15, channel="chat", queue="sales-new")
    add("g1", "cg1", "maria garcia", "sales", 15, channel="chat", queue="sales-new")
    for i in range(3):
        add(f"x{i}", f"cx{i}", INJECTION_AGENT, "sales", 12, channel="chat", queue="sales-new")
    # the previous 30 days: bob 1 of 2
    add("bp0", "cbp0", "bob", "billing", 45)
    add("bp1", "cbp1", "bob", "billing", 45)
    add("bp1r", "cbp1", "bob", "billing", 44, direction="outbound")  # outbound: never a repeat
    add("bp2r", "cbp0", "nobody", "billing", 44.5)  # a repeat of bp0
    add_contacts(store, records)


def add_contacts(store: ContactStore, records: list[dict[str, Any]]) -> None:
    """Validate ``records`` (naive times in UTC) and store them as one batch; a bad record fails the test."""
    store.upsert([valid(record) for record in records])


def slack_settings(database_url: str, api_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "slack_signing_secret": SECRET,
        "slack_bot_token": "xoxb-test-token",
        "slack_api_url": api_url,
    }
    values.update(overrides)
    return load_settings(**{k: v for k, v in values.items() if v is not None})


class SlackServer:
    """``build_app`` with the Slack routes, exactly as ``acr-bot serve`` builds it, under uvicorn in a thread."""

    def __init__(
        self,
        settings: Settings,
        store: ContactStore,
        compute_fn: Compute = compute,
        schedules: ScheduleManager | None = None,
    ):
        answerer = Answerer(settings, store, Supervisors.from_settings(settings, None), compute_fn)
        schedules = schedules or ScheduleManager(store, settings.zone, SystemClock())
        self.bot: SlackBot = build_slack(settings, store, answerer, schedules)
        answerer.supervisors = Supervisors.from_settings(settings, self.bot.client)
        self.answerer = answerer
        app = build_app(settings, store, extra_routes=self.bot.routes)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.http = httpx.Client(timeout=10)

    def __enter__(self) -> SlackServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/slack/events"
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)

    # --- signed requests -------------------------------------------------------------------------------

    def post(self, body: str, content_type: str, **signing: Any) -> httpx.Response:
        return signed_post(self.http, self.url, body, content_type, **signing)

    def command(
        self, text: str, *, command: str = "/acr", user: str = "U0SUPER", response_url: str, **signing: Any
    ) -> httpx.Response:
        return self.post(command_form(text, command, user, response_url), FORM, **signing)

    def event(self, event: dict[str, Any], **signing: Any) -> httpx.Response:
        body = {
            "token": "legacy-unused",
            "team_id": "T0TEAM",
            "api_app_id": "A0APP",
            "type": "event_callback",
            "event_id": f"Ev{time.monotonic_ns()}",
            "event_time": int(time.time()),
            "event": event,
        }
        return self.post(json.dumps(body), "application/json", **signing)

    def action(self, user: str, action_id: str, **signing: Any) -> httpx.Response:
        payload = {
            "type": "block_actions",
            "team": {"id": "T0TEAM", "domain": "acme"},
            "user": {"id": user, "team_id": "T0TEAM"},
            "api_app_id": "A0APP",
            "container": {"type": "view", "view_id": "V0"},
            "trigger_id": "1.2.3",
            "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "action_ts": "1"}],
        }
        return self.post(urlencode({"payload": json.dumps(payload)}), FORM, **signing)


FORM = "application/x-www-form-urlencoded"


def signed_post(
    http: httpx.Client,
    url: str,
    body: str,
    content_type: str,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    """POST ``body`` signed the way Slack signs requests (v0 HMAC of timestamp and body)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    assert signature is not None
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature, "Content-Type": content_type}
    return http.post(url, content=body.encode(), headers=headers)


def command_form(text: str, command: str, user: str, response_url: str) -> str:
    """The form body Slack posts for a slash command."""
    form = {
        "token": "legacy-unused",
        "team_id": "T0TEAM",
        "team_domain": "acme",
        "channel_id": "C0CHAN",
        "channel_name": "support-leads",
        "user_id": user,
        "user_name": "someone",
        "command": command,
        "text": text,
        "api_app_id": "A0APP",
        "response_url": response_url,
        "trigger_id": "1.2.3",
    }
    return urlencode(form)


@contextmanager
def running(settings: Settings, store: ContactStore, compute_fn: Compute = compute) -> Iterator[SlackServer]:
    with SlackServer(settings, store, compute_fn) as server:
        yield server


def all_text(message: dict[str, Any]) -> str:
    """Every text of a posted message or view: what a user would read."""
    return json.dumps(message.get("blocks", message), ensure_ascii=False) + json.dumps(message.get("text", ""))


def target_line_pixels(png: bytes) -> int:
    """How many pixels of a chart are the target line's green (``bot.charts.TARGET_COLOR``, anti-aliased: clearly
    greener than red and blue, which no other colour of the charts is): none when no target is drawn."""
    from PIL import Image

    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3) if data[i + 1] > data[i] + 50 and data[i + 1] > data[i + 2] + 30)

"""Charts and CSV exports with an /acr answer, through the signed HTTP path: the real server and bolt App against
the fake Slack, which records the files_upload_v2 calls (files.getUploadURLExternal, the upload, and
files.completeUploadExternal); in the thread of the shared reply, or by direct message when the reply is private."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.charts import Series, TrendChart, split_small, trend_png
from bot.storage import ContactStore
from metrics.query import Counts
from tests.fake_slack import FakeSlack
from tests.slack_support import SlackServer, add_contacts, all_text, running, slack_settings, target_line_pixels

CHANNEL = "C0CHAN"  # the channel of the slash command (tests/slack_support.py command_form)
DM = "D0DIRECT"
UPLOAD_WAIT_S = 120  # drawing a chart on a busy machine: the first matplotlib import alone can take seconds


def history(days: int) -> list[dict[str, Any]]:
    """Two agents of team billing over ``days`` days up to now, 12 contacts a day; a few customers come back."""
    now = datetime.now(UTC).replace(microsecond=0)
    records: list[dict[str, Any]] = []
    for day in range(days):
        for i in range(12):
            start = now - timedelta(days=day, hours=i + 1)
            customer = f"k{day}-{i}"
            agent = "maria" if i % 2 else "omar"
            records.append(
                {"id": f"c{day}-{i}", "customer_id": customer, "agent": agent, "team": "billing",
                 "channel": "phone", "started_at": start.isoformat(), "ended_at": (start + timedelta(minutes=5)).isoformat()}
            )  # fmt: skip
            if i % 4 == 0:
                again = start + timedelta(hours=20)
                records.append({"id": f"r{day}-{i}", "customer_id": customer, "started_at": again.isoformat()})
    return records


@pytest.fixture
def slack(store: ContactStore, database_url: str) -> Iterator[tuple[SlackServer, FakeSlack]]:
    add_contacts(store, history(70))
    with FakeSlack() as fake, running(slack_settings(database_url, fake.api_url), store) as server:
        fake.answer("conversations.open", {"ok": True, "channel": {"id": DM}})
        yield server, fake


def ask(slack: tuple[SlackServer, FakeSlack], text: str, name: str) -> dict[str, Any]:
    server, fake = slack
    response = server.command(text, response_url=fake.response_url(name))
    assert response.status_code == 200, response.text
    return fake.reply(name)


def uploads(fake: FakeSlack, count: int) -> list[dict[str, Any]]:
    """The completed uploads (files.completeUploadExternal bodies), after the bytes were sent."""
    calls = fake.wait_for("files.completeUploadExternal", count, timeout=UPLOAD_WAIT_S)
    return [call.body for call in calls]


def sent_bytes(fake: FakeSlack) -> list[Any]:
    """The uploads of the files' bytes (to the URL files.getUploadURLExternal gave)."""
    return [call for call in fake.calls if call.path.startswith("/upload/")]


def uploaded_files(fake: FakeSlack) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for body in (call.body for call in fake.calls_to("files.completeUploadExternal")):
        files = body["files"] if isinstance(body["files"], list) else json.loads(body["files"])
        found.extend({**f, "channel_id": body.get("channel_id"), "thread_ts": body.get("thread_ts")} for f in files)
    return found


def test_a_private_trend_comes_with_its_chart_by_direct_message(slack: tuple[SlackServer, FakeSlack]) -> None:
    _server, fake = slack
    reply = ask(slack, "by:week last:56d", "weeks")
    assert reply["response_type"] == "ephemeral"
    assert "The chart is on its way to your direct messages with the bot." in all_text(reply)
    [done] = uploads(fake, 1)
    assert done["channel_id"] == DM and "thread_ts" not in done
    [opened] = fake.calls_to("conversations.open")
    assert opened.body["users"] == "U0SUPER"
    [upload] = sent_bytes(fake)
    assert upload.body["png"] is True and upload.body["bytes"] > 5_000
    assert target_line_pixels(upload.body["content"]) == 0  # TARGET_ACR is unset by default: no target line
    [url_call] = fake.calls_to("files.getUploadURLExternal")
    assert url_call.body["filename"].startswith("acr-by-week-") and url_call.body["filename"].endswith(".png")


def test_a_chart_draws_the_target_and_the_reply_says_how_far_it_is(store: ContactStore, database_url: str) -> None:
    add_contacts(store, history(70))
    with FakeSlack() as fake, running(slack_settings(database_url, fake.api_url, target_acr=95), store) as server:
        fake.answer("conversations.open", {"ok": True, "channel": {"id": DM}})
        reply = ask((server, fake), "by:week last:56d", "weeks")
        assert "points below the 95% target" in all_text(reply)
        uploads(fake, 1)
        [upload] = sent_bytes(fake)
        assert target_line_pixels(upload.body["content"]) > 200  # a dashed line across the chart


def test_a_shared_answer_is_posted_and_its_chart_and_csv_go_in_its_thread(
    slack: tuple[SlackServer, FakeSlack],
) -> None:
    server, fake = slack
    response = server.command("team:billing by:day last:14d export share", response_url=fake.response_url("s"))
    assert response.status_code == 200
    [done] = uploads(fake, 1)
    [posted] = fake.posts()
    assert posted.body["channel"] == CHANNEL and "By day" in all_text(posted.body)
    assert done["channel_id"] == CHANNEL and done["thread_ts"] == "1700000000.000001"
    names = sorted(f["title"] for f in uploaded_files(fake))
    assert len(names) == 2 and names[0].startswith("ACR by day — team billing")
    sizes = [call.body for call in sent_bytes(fake)]
    assert sorted(s["png"] for s in sizes) == [False, True]
    assert fake.calls_to("/respond/s") == []  # the shared reply went by chat.postMessage, not response_url


def test_export_has_slide_ready_columns_for_every_row(slack: tuple[SlackServer, FakeSlack]) -> None:
    _server, fake = slack
    ask(slack, "by:agent last:30d export", "csv")
    uploads(fake, 1)
    [upload] = sent_bytes(fake)
    rows = list(csv.DictReader(io.StringIO(upload.body["content"].decode())))
    assert list(rows[0]) == ["agent", "metric", "window", "period", "as of", "rate %", "95% low %", "95% high %",
                             "matured", "resolved", "pending"]  # fmt: skip
    assert sorted(row["agent"] for row in rows) == ["maria", "omar"]
    assert rows[0]["metric"] == "ACR" and rows[0]["window"] == "7d"
    assert all(len(row["rate %"].split(".")[1]) == 1 for row in rows)


def test_a_failed_upload_is_told_to_the_user(slack: tuple[SlackServer, FakeSlack]) -> None:
    _server, fake = slack
    fake.answer("files.getUploadURLExternal", {"ok": False, "error": "not_allowed_token_type"})
    ask(slack, "by:month last:60d", "m")
    failure = fake.wait_for("/respond/m", 2, timeout=UPLOAD_WAIT_S)[-1].body
    assert "could not be uploaded to Slack (not_allowed_token_type)" in failure["text"]


def test_small_samples_are_hollow_never_a_spike() -> None:
    """A period of 7 of 7 is a hollow marker off the line (a gap in it), never a 100% point of the trend."""
    counts = [Counts(200, 140, 0), Counts(7, 7, 0), Counts(0, 0, 3), Counts(190, 130, 0)]
    line, hollow = split_small(counts, 30)
    assert line[0] == 70.0 and math.isnan(line[1]) and math.isnan(line[2]) and round(line[3], 1) == 68.4
    assert hollow == [(1, 100.0)]
    png = trend_png(TrendChart("t", ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23"], [Series("ACR", counts)]))
    assert png.startswith(b"\x89PNG")

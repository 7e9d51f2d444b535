"""The daily digest: its numbers, its chart in the thread, upload failure, missed digests and the grace period,
the scheduler in the server, ``acr-bot digest`` and the README example."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.clock import ManualClock
from bot.scheduler.delivery import Poster
from bot.scheduler.example import write_example
from bot.scheduler.jobs import Jobs
from bot.scheduler.service import ROLLUP_DAYS_PER_RUN, ROLLUP_MINUTES, SchedulerService
from bot.storage import ContactStore, open_store
from bot.storage.schedules import AlertState
from tests.fake_slack import FakeSlack
from tests.scheduler_support import (
    DAY_S,
    add_contacts,
    at,
    blocks_text,
    contacts_for,
    jobs_for,
    quick_client,
    settings_for,
)
from tests.slack_support import target_line_pixels
from tests.store_support import needs_rollups, probe

REPO = Path(__file__).resolve().parents[1]
DUE = at("2026-03-09 09:00")  # Monday 09:00 UTC
DUE_S = DUE / 1_000_000
HOUR_US = 3600 * 1_000_000


def seed(store: ContactStore) -> None:
    """Billing: maria 30/40 without repeat (75%), bob 36/40 (90%), 30-10 days ago; 3 contacts of maria yesterday
    (pending for the 7-day window). Sales: ann 10/10 (below the minimum sample). The 30 days before: bob 5/10."""
    records: list[dict[str, Any]] = []
    records += contacts_for("billing", "maria", 40, 0.75, DUE_S - 10 * DAY_S, prefix="m", span_days=15)
    records += contacts_for("billing", "bob", 40, 0.90, DUE_S - 10 * DAY_S, prefix="b", span_days=15)
    records += contacts_for("sales", "ann <!channel>", 10, 1.0, DUE_S - 10 * DAY_S, prefix="a", span_days=15)
    records += contacts_for("billing", "bob", 10, 0.5, DUE_S - 40 * DAY_S, prefix="old", span_days=5)
    yesterday = DUE_S - 20 * 3600  # Sunday 13:00
    records += [
        {"id": f"y{i}", "customer_id": f"cy{i}", "agent": "maria", "team": "billing", "started_at": yesterday + i}
        for i in range(3)
    ]
    add_contacts(store, records)


@pytest.fixture
def seeded(database_url: str) -> str:
    """The URL of a database holding ``seed``'s contacts."""
    store = open_store(database_url)
    seed(store)
    store.close()
    return database_url


def run_at(seeded: str, fake: FakeSlack, now_us: int, scope: str = "team:billing", **config: Any) -> None:
    store = open_store(seeded)
    try:
        if not store.schedules().list_subscriptions():
            store.schedules().save_subscription("C0LEADS", scope, "09:00", None, False, None, DUE - 48 * HOUR_US)
        jobs_for(settings_for(seeded, fake, **config), store, ManualClock(now_us)).run_digests()
    finally:
        store.close()


@pytest.mark.slow
def test_team_digest_numbers_agents_pending_and_yesterday(seeded: str, fake: FakeSlack) -> None:
    run_at(seeded, fake, DUE)
    [post] = fake.posts()
    text = blocks_text(post)
    assert "ACR daily digest — team billing — Mon 2026-03-09" in text
    # 66 of 80 matured without repeat; the 30 days before: 5 of 10 -> up 32.5 points
    assert "ACR (7-day window): 82.5% (95% CI" in text and "n=80" in text
    # the data starts 40 days ago, inside the 30 days before, which hold 10 matured against 80: not compared
    assert "the 30 days before have far less data (n=10: the data starts inside them)" in text
    assert "10.0 points above the 70% target" not in text and "Tier-1 resolution (7-day window): " in text
    assert "Yesterday (Sun 2026-03-08): 3 inbound contacts handled" in text
    assert "3 for the 7-day window" in text
    # per-agent lines (a team digest), worst first
    table = text[text.index("By agent") :]
    assert table.index("maria") < table.index("bob")
    assert "Lowest ACR (agents with at least 30 matured contacts): maria 75.0% (" in text
    assert "Highest ACR: bob 90.0% (" in text
    assert "Alerts firing: none." in text


@pytest.mark.slow
def test_all_teams_digest_has_team_lines_escapes_names_and_lists_firing_alerts(seeded: str, fake: FakeSlack) -> None:
    store = open_store(seeded)
    rule = store.schedules().add_alert_rule(
        "tier1", 0.95, 7 * 24 * HOUR_US, 7, "team:billing", 30, "C0X", False, None, DUE
    )
    store.schedules().save_alert_evaluation(
        rule.id, AlertState(firing=True, episode=1, fired_us=DUE - HOUR_US, last_rate=0.81, last_matured=80), [], DUE
    )
    store.close()
    run_at(seeded, fake, DUE, scope="")
    [post] = fake.posts()
    text = blocks_text(post)
    assert "By team" in text and "billing" in text and "sales" in text
    assert "<!channel>" not in text  # an agent name cannot ping the channel
    assert "Alerts firing: tier-1 below 95% for team billing" in text and "now 81.0%" in text
    # ann (10 contacts) is below the minimum sample: never named among the lowest/highest
    extremes = text[text.index("Lowest ACR") :]
    assert "ann" not in extremes.split("Alerts firing")[0]


@pytest.mark.slow
def test_chart_is_uploaded_in_the_digest_thread(seeded: str, fake: FakeSlack) -> None:
    run_at(seeded, fake, DUE)
    [post] = fake.posts()
    [url_call] = fake.calls_to("files.getUploadURLExternal")
    assert url_call.body["filename"] == "acr-trend-2026-03-09.png"
    [upload] = [c for c in fake.calls if c.path.startswith("/upload/")]
    assert upload.body["png"] and upload.body["bytes"] > 5_000
    assert target_line_pixels(upload.body["content"]) > 200  # TARGET_TIER1's default 70% across the trend
    [complete] = fake.calls_to("files.completeUploadExternal")
    body = complete.body
    assert body["channel_id"] == "C0LEADS"
    store = open_store(seeded)
    try:
        digest = store.outbox().outbox_entry("digest:C0LEADS:team:billing:2026-03-09")
        chart = store.outbox().outbox_entry("digest:C0LEADS:team:billing:2026-03-09:chart")
    finally:
        store.close()
    assert digest is not None and digest.ts is not None and post.body["channel"] == "C0LEADS"
    assert body["thread_ts"] == digest.ts  # in the digest's thread
    assert chart is not None and chart.status == "sent"


@pytest.mark.slow
def test_upload_failure_still_sends_the_text_and_is_logged(
    seeded: str, fake: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer("files.getUploadURLExternal", {"ok": False, "error": "not_allowed_token_type"})
    with caplog.at_level(logging.WARNING, logger="acr_bot.scheduler"):
        run_at(seeded, fake, DUE)
    assert len(fake.posts()) == 1
    assert "ACR daily digest" in fake.posts()[0].body["text"]
    assert "digest:C0LEADS:team:billing:2026-03-09:chart" in caplog.text and "not_allowed_token_type" in caplog.text
    assert fake.calls_to("files.completeUploadExternal") == []


@pytest.mark.slow
def test_upload_outage_does_not_hold_back_the_text(seeded: str, fake: FakeSlack) -> None:
    fake.fail("/upload/F0001", 500, times=100)
    store = open_store(seeded)
    try:
        store.schedules().save_subscription("C0LEADS", "", "09:00", None, False, None, DUE - 48 * HOUR_US)
        config = settings_for(seeded, fake)
        clock = ManualClock(DUE)
        poster = Poster(quick_client(config), store.outbox(), clock, attempts_now=1)
        run = Jobs(config, store, poster, clock).run_digests()
        assert run.delivery.sent == ["digest:C0LEADS:*:2026-03-09"]
        assert run.delivery.retrying == ["digest:C0LEADS:*:2026-03-09:chart"]
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize(("late_hours", "sent"), [(5.9, True), (6.1, False)])
def test_digest_missed_while_down_is_sent_on_start_within_the_grace_period(
    seeded: str, fake: FakeSlack, caplog: pytest.LogCaptureFixture, late_hours: float, sent: bool
) -> None:
    store = open_store(seeded)
    try:
        store.schedules().save_subscription("C0LEADS", "", "09:00", None, False, None, DUE - 48 * HOUR_US)
        config = settings_for(seeded, fake, digest_grace_hours=6)
        clock = ManualClock(DUE + round(late_hours * HOUR_US))
        service = SchedulerService(config, store, quick_client(config), clock)
        with caplog.at_level(logging.WARNING, logger="acr_bot.scheduler"):
            service.catch_up()  # what the server runs first on start
        assert len(fake.posts()) == (1 if sent else 0)
        if sent:  # numbers as of 09:00, not as of the late start
            assert "As of 2026-03-09 09:00 UTC" in blocks_text(fake.posts()[0])
        else:
            assert "digest:C0LEADS:*:2026-03-09 was due at 2026-03-09T09:00:00+00:00" in caplog.text
            assert "skipped" in caplog.text
    finally:
        store.close()


def test_scheduler_builds_jobs_from_the_database_and_follows_changes(seeded: str, fake: FakeSlack) -> None:
    store = open_store(seeded)
    config = settings_for(seeded, fake, bot_timezone="America/New_York", alert_interval_minutes=15)
    service = SchedulerService(config, store, quick_client(config), ManualClock(DUE))
    try:
        sub, _ = store.schedules().save_subscription("C0LEADS", "", "09:00", None, True, None, DUE)
        service.start()
        job = service.scheduler.get_job(f"digest:{sub.id}")
        assert job is not None
        local = job.next_run_time.astimezone(config.zone)
        assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5
        assert service.scheduler.get_job("alerts").trigger.interval.total_seconds() == 15 * 60
        # a change made by another process (acr-bot subscriptions) is picked up by the next sync
        store.schedules().save_subscription("C0LEADS", "", "07:30", "Europe/Berlin", False, None, DUE)
        other, _ = store.schedules().save_subscription("C0OTHER", "team:billing", "10:00", None, False, None, DUE)
        service.sync_subscriptions()
        moved = service.scheduler.get_job(f"digest:{sub.id}").next_run_time
        assert moved.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "07:30"
        assert service.scheduler.get_job(f"digest:{other.id}") is not None
        store.schedules().remove_subscription(other.id)
        service.sync_subscriptions()
        assert service.scheduler.get_job(f"digest:{other.id}") is None
    finally:
        service.shutdown()
        store.close()
    assert not service.scheduler.running


@pytest.mark.slow
def test_cli_dry_run_prints_and_posts_nothing_then_a_real_run_posts_once(
    seeded: str, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", seeded)
    monkeypatch.setenv("SLACK_API_URL", fake.api_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    runner = CliRunner()
    fake.answer("conversations.list", {"ok": True, "channels": [{"id": "C0LEADS", "name": "support-leads"}]})
    added = runner.invoke(main, ["subscriptions", "add", "support-leads", "09:00", "team:billing"])  # by name
    assert added.exit_code == 0, added.output
    fake.calls.clear()
    store = open_store(seeded)  # pretend it was added last week, so today's 09:00 counts
    sub = store.schedules().list_subscriptions()[0]
    store.schedules().save_subscription(sub.channel, sub.scope, sub.local_time, None, False, None, DUE - 48 * HOUR_US)
    store.close()
    dry = runner.invoke(main, ["digest", "--dry-run", "--as-of", "2026-03-09T09:05:00Z"])
    assert dry.exit_code == 0, dry.output
    assert "would post now" in dry.output and "ACR (7-day window): 82.5%" in dry.output
    assert fake.calls == []
    for expected in ("digest:C0LEADS:team:billing:2026-03-09: sent", "No digest is due."):  # then: already sent
        real = runner.invoke(main, ["digest", "--as-of", "2026-03-09T09:05:00Z", "--channel", "support-leads"])
        assert real.exit_code == 0, real.output
        assert expected in real.output
    assert len(fake.posts()) == 1
    [complete] = fake.calls_to("files.completeUploadExternal")  # the chart: uploads need the channel's id
    assert complete.body["channel_id"] == "C0LEADS" and fake.posts()[0].body["channel"] == "C0LEADS"
    bad = runner.invoke(main, ["digest", "--as-of", "yesterday-ish"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: --as-of:")


@pytest.mark.slow
def test_digest_example_command_writes_text_and_chart(tmp_path: Path) -> None:
    markdown, png = write_example(tmp_path)
    text = markdown.read_text()
    assert "ACR daily digest — all teams — Mon 2026-03-09" in text and "By team" in text
    assert png.read_bytes().startswith(b"\x89PNG")
    committed = REPO / "docs" / "digest-example.md"
    assert committed.read_text() == text, "docs/digest-example.md is out of date: run `make digest-example`"
    plain = text.split("```\n", 1)[1].split("\n```", 1)[0]
    readme = (REPO / "README.md").read_text()
    assert f"```\n{plain}\n```" in readme, "README's digest example differs from docs/digest-example.md"
    assert "docs/digest-example.png" in readme


def test_scheduler_rebuilds_stale_metric_rollups_in_bounded_runs(seeded: str, fake: FakeSlack) -> None:
    """After an import the rollups are stale; the server's rollup job brings them back, a few days per run."""
    needs_rollups(seeded)
    store = open_store(seeded)
    config = settings_for(seeded, fake)
    service = SchedulerService(config, store, quick_client(config), ManualClock(DUE))
    try:
        stale = probe(store).stale_rollup_days(config.zone)
        assert stale != 0, "the seeded import should leave rollups to build"
        service.start()
        job = service.scheduler.get_job("rollups")
        assert job is not None and job.trigger.interval.total_seconds() == ROLLUP_MINUTES * 60
        runs = 0
        while probe(store).stale_rollup_days(config.zone) != 0:
            assert 0 < service.refresh_rollups() <= ROLLUP_DAYS_PER_RUN
            runs += 1
            assert runs < 1000
        assert service.refresh_rollups() == 0
    finally:
        service.shutdown()
        store.close()


def _mrkdwn_texts(body: dict[str, Any]) -> list[str]:
    """Every text of a posted message that Slack reads as mrkdwn (where <!channel> and <@U..> would ping)."""
    texts = [str(body.get("text", ""))]
    for block in body.get("blocks") or []:
        found = [block.get("text"), *(block.get("elements") or []), *(block.get("fields") or [])]
        texts += [item["text"] for item in found if isinstance(item, dict) and item.get("type") == "mrkdwn"]
    return texts


def test_names_from_contact_data_never_ping_anyone_in_a_team_digest(database_url: str, fake: FakeSlack) -> None:
    """Defect 6: the team name reached the notification text, and agent names the table, raw."""
    team = "Sales <!channel>"
    records = contacts_for(team, "<@U0BOSS> ann", 40, 0.75, DUE_S - 10 * DAY_S, prefix="a", span_days=15)
    records += contacts_for(team, "bob @here", 40, 0.9, DUE_S - 10 * DAY_S, prefix="b", span_days=15)
    store = open_store(database_url)
    try:
        add_contacts(store, records)
        store.schedules().save_subscription("C0LEADS", f"team:{team}", "09:00", None, False, None, DUE - 48 * HOUR_US)
        jobs_for(settings_for(database_url, fake), store, ManualClock(DUE)).run_digests()
    finally:
        store.close()
    [post] = fake.posts()
    texts = _mrkdwn_texts(post.body)
    assert any("Sales &lt;!channel&gt;" in text for text in texts)  # shown, escaped
    assert any("&lt;@U0BOSS&gt; ann" in text for text in texts)
    for text in texts:
        assert "<!channel>" not in text and "<@U0BOSS>" not in text and "@here" not in text, text


def test_dry_run_previews_a_digest_before_any_subscription(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the new-user list: `digest --dry-run` said only "No digest subscriptions"; now it shows the digest."""
    monkeypatch.setenv("DATABASE_URL", seeded)
    everyone = CliRunner().invoke(main, ["digest", "--dry-run", "--as-of", "2026-03-09T09:05:00Z"])
    assert everyone.exit_code == 0, everyone.output
    assert everyone.stdout.startswith("--- preview (all teams), as of 2026-03-09 09:05 UTC; no subscription yet\n")
    assert "ACR daily digest — all teams — Mon 2026-03-09" in everyone.stdout and "By team" in everyone.stdout
    team = CliRunner().invoke(main, ["digest", "--dry-run", "--team", "billing", "--as-of", "2026-03-09T09:05:00Z"])
    assert "ACR (7-day window): 82.5%" in team.stdout and "missed" not in team.stdout
    store = open_store(seeded)
    try:
        assert store.outbox().due_messages(2**62) == [] and store.schedules().list_subscriptions() == []
    finally:
        store.close()


def test_digest_says_whether_a_change_is_significant_and_how_far_the_target_is(seeded: str, fake: FakeSlack) -> None:
    store = open_store(seeded)
    early = DUE_S - 70 * DAY_S  # the data now starts before the 30 days before
    add_contacts(
        store, [{"id": "early", "customer_id": "c-early", "agent": "bob", "team": "billing", "started_at": early}]
    )
    store.close()
    run_at(seeded, fake, DUE, target_acr=85)
    text = blocks_text(fake.posts()[0])
    # 66 of 80 matured without repeat; the 30 days before: 5 of 10 -> up 32.5 points, p = 0.018
    assert "ACR (7-day window): 82.5% (95% CI" in text
    assert "n=80); 2.5 points below the 85% target; vs the 30 days before (50.0%): up 32.5 points, significant" in text
    assert "points above the 70% target" in text or "points below the 70% target" in text  # tier-1, default target

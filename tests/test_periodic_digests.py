"""Weekly and monthly digests: subscribed in Slack through the signed path, due at the right local time across a DST
change, posted exactly once (also after a restart), the last complete week (month) against the one before with
significance, and the trend chart in the digest's thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlite_utils import Database

from bot.clock import ManualClock
from bot.period_examples import write_examples
from bot.scheduler import periodic
from bot.scheduler.delivery import Poster
from bot.scheduler.jobs import Jobs, schedule_of
from bot.scheduler.words import Subscribe, parse_schedule_command
from bot.storage import ContactStore, open_store
from bot.storage.postgres_migrations import MIGRATIONS
from bot.storage.sqlite_migrations import migrations
from metrics.errors import UserError
from metrics.query import METRICS, Counts, Metric, MetricQuery, MetricResult
from tests.fake_slack import FakeSlack
from tests.scheduler_support import (
    DAY_S,
    add_contacts,
    at,
    blocks_text,
    contacts_for,
    quick_client,
    settings_for,
)
from tests.slack_support import SlackServer, all_text, slack_settings, target_line_pixels
from tests.store_support import sqlite_url

REPO = Path(__file__).resolve().parents[1]
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
# Monday 2026-03-09, the day after the spring-forward change in New York: 09:00 EDT is 13:00 UTC (a week
# earlier, 09:00 EST was 14:00 UTC).
WEEKLY_DUE = at("2026-03-09 09:00", NEW_YORK)
# Wednesday 2026-04-01 09:00 in Berlin, after its change of 2026-03-29: 07:00 UTC (on 2026-03-01 it was 08:00).
MONTHLY_DUE = at("2026-04-01 09:00", BERLIN)
HOUR_US = 3600 * 1_000_000


def seed(store: ContactStore) -> None:
    """Team care: the week of 2026-02-16 resolves 90% (180 contacts), the week of 2026-02-23 only 70% (200, a
    significant drop; the latest week matured by Monday 2026-03-09), the week of 2026-03-02 has 50 (all pending
    then); March (bo) 55%. Team desk: 8 contacts in the week of 2026-02-23 (a small sample). Each repeat is
    handled by repeat-desk of team other, one hour later."""
    records: list[dict[str, Any]] = []
    reported_end = at("2026-03-01 12:00", NEW_YORK) / 1e6
    records += contacts_for("care", "ana", 180, 0.90, at("2026-02-22 12:00", NEW_YORK) / 1e6, prefix="wb", span_days=6)
    records += contacts_for("care", "ana", 200, 0.70, reported_end, prefix="wl", span_days=6)
    records += contacts_for("care", "ana", 50, 1.0, at("2026-03-08 12:00", NEW_YORK) / 1e6, prefix="new", span_days=6)
    records += contacts_for("care", "bo", 120, 0.55, at("2026-03-28 12:00", BERLIN) / 1e6, prefix="mar", span_days=14)
    records += contacts_for("desk", "cy", 8, 1.0, reported_end, prefix="desk", span_days=5)
    add_contacts(store, records)


@pytest.fixture
def seeded(database_url: str) -> str:
    store = open_store(database_url)
    seed(store)
    store.close()
    return database_url


def subscribe(store: ContactStore, words: str, created_us: int) -> None:
    command = parse_schedule_command(["subscribe", *words.split()])
    assert isinstance(command, Subscribe)
    store.schedules().save_subscription(
        "C0LEADS", command.scope, command.local_time, command.zone, False, None, created_us,
        command.cadence, command.cadence_day,
    )  # fmt: skip


def run(seeded: str, fake: FakeSlack, now_us: int, zone: str) -> Any:
    """One scheduler run as the server does it, with a new Jobs and Poster (a restart each time)."""
    store = open_store(seeded)
    try:
        config = settings_for(seeded, fake, bot_timezone=zone)
        clock = ManualClock(now_us)
        return Jobs(config, store, Poster(quick_client(config), store.outbox(), clock), clock).run_digests()
    finally:
        store.close()


def test_weekly_digest_is_due_at_09_local_across_dst_and_posted_once(seeded: str, fake: FakeSlack) -> None:
    store = open_store(seeded)
    subscribe(store, "weekly mon 09:00", WEEKLY_DUE - 10 * DAY_S * 1_000_000)
    [subscription] = store.schedules().list_subscriptions()
    schedule = schedule_of(subscription, NEW_YORK)
    assert schedule.next_after(WEEKLY_DUE - 1)[1] == at("2026-03-09 13:00")  # 09:00 EDT
    latest = schedule.latest_at_or_before(WEEKLY_DUE - 1)
    assert latest is not None and latest[1] == at("2026-03-02 14:00")  # 09:00 EST, a week before
    store.close()
    assert run(seeded, fake, WEEKLY_DUE - 60 * 1_000_000, "America/New_York").digests == []  # 08:59: not yet
    first = run(seeded, fake, WEEKLY_DUE, "America/New_York")
    assert first.delivery.sent == ["digest-weekly:C0LEADS:*:2026-03-09", "digest-weekly:C0LEADS:*:2026-03-09:chart"]
    again = run(seeded, fake, WEEKLY_DUE + HOUR_US, "America/New_York")  # a restart an hour later
    assert again.digests == [] and again.delivery.sent == []
    [post] = fake.posts()
    text = blocks_text(post)
    assert "ACR weekly digest — all teams — week of Mon 2026-02-23 to Sun 2026-03-01" in text
    # 140 + 60 repeats (handled by team other, no repeat) + 8 of desk = 208 of 268; the week before 198 of 218
    assert "ACR (7-day window): 77.6% ▼13.3 pts" in text
    assert "vs the week before (90.9%): down 13.3 points, significant;" in text  # the one rule (change_words)
    assert "Tier-1 resolution:" in text and "the 70% target" in text  # TARGET_TIER1's default; ACR has none
    assert "latest week whose 7-day window has closed" in text and "50 contacts, 50 of them still pending" in text
    assert "As of 2026-03-09 09:00 EDT" in text
    assert "care" in text and "desk" in text and "* fewer than 30 matured" in text
    [complete] = fake.calls_to("files.completeUploadExternal")
    assert complete.body["thread_ts"] == "1700000000.000001"  # the digest's ts (tests/scheduler_support.py)
    [url_call] = fake.calls_to("files.getUploadURLExternal")
    assert url_call.body["filename"] == "acr-weekly-2026-03-09.png"
    [chart] = [call for call in fake.calls if call.path.startswith("/upload/")]
    assert target_line_pixels(chart.body["content"]) > 200  # the tier-1 target drawn across the trend


def test_monthly_digest_on_the_first_after_berlins_dst_change(seeded: str, fake: FakeSlack) -> None:
    store = open_store(seeded)
    subscribe(store, "monthly 1 09:00 tz:Europe/Berlin team:care", at("2026-03-01 00:00"))
    store.close()
    assert at("2026-04-01 07:00") == MONTHLY_DUE
    assert run(seeded, fake, MONTHLY_DUE - 1, "UTC").digests == []
    done = run(seeded, fake, MONTHLY_DUE + 5 * 60 * 1_000_000, "UTC")
    assert done.delivery.sent == [
        "digest-monthly:C0LEADS:team:care:2026-04-01",
        "digest-monthly:C0LEADS:team:care:2026-04-01:chart",
    ]
    assert run(seeded, fake, MONTHLY_DUE + HOUR_US, "UTC").delivery.sent == []
    [post] = fake.posts()
    text = blocks_text(post)
    assert "ACR monthly digest — team care — March 2026" in text and "vs the month before" in text
    assert "As of 2026-04-01 09:00 CEST" in text and "By agent, March 2026" in text


def test_subscribe_words_for_weekly_and_monthly() -> None:
    weekly = parse_schedule_command(["subscribe", "#leads", "weekly", "Mon", "09:00"])
    assert isinstance(weekly, Subscribe) and (weekly.cadence, weekly.cadence_day) == ("weekly", 0)
    monthly = parse_schedule_command(["subscribe", "monthly", "1", "07:30", "team:care"])
    assert isinstance(monthly, Subscribe) and (monthly.cadence, monthly.cadence_day) == ("monthly", 1)
    for words, problem in (
        (["weekly", "09:00"], "weekly needs a day of the week"),
        (["monthly", "31", "09:00"], "the day of the month must be 1 to 28"),
        (["weekly", "fri", "09:00", "weekdays"], "weekdays is for daily digests only"),
    ):
        with pytest.raises(UserError, match=problem):
            parse_schedule_command(["subscribe", *words])


def test_slack_subscribes_a_weekly_digest_beside_the_daily_one(database_url: str, fake: FakeSlack) -> None:
    store = open_store(database_url)
    config = slack_settings(database_url, fake.api_url, bot_timezone="America/New_York")
    try:
        with SlackServer(config, store) as server:
            for name, text in (("d", "subscribe #leads daily 08:00"), ("w", "subscribe #leads weekly mon 09:00"),
                               ("m", "subscribe #leads monthly 1 09:00"), ("l", "subscriptions")):  # fmt: skip
                assert server.command(text, response_url=fake.response_url(name)).status_code == 200
                fake.reply(name, timeout=60)  # answered (and stored) before the next command: replies are async
            listed = all_text(fake.reply("l"))
            assert "daily at 08:00" in listed and "weekly on Mondays at 09:00" in listed
            assert "monthly on day 1 at 09:00" in listed
            assert "First digest: Mon" in all_text(fake.reply("w"))
            assert server.command("unsubscribe #leads", response_url=fake.response_url("u")).status_code == 200
            assert "say which, e.g. unsubscribe #leads monthly" in all_text(fake.reply("u"))
            assert server.command("unsubscribe #leads weekly", response_url=fake.response_url("u2")).status_code == 200
            assert "Unsubscribed #leads from the weekly all teams digest." in all_text(fake.reply("u2"))
        assert [s.cadence for s in store.schedules().list_subscriptions()] == ["daily", "monthly"]
    finally:
        store.close()


@pytest.mark.slow
def test_the_readme_examples_are_what_make_periods_example_writes(tmp_path: Path) -> None:
    """The weekly digest and the chart reply in the README come from ``make periods-example`` (demo data)."""
    written = write_examples(tmp_path)
    readme = (REPO / "README.md").read_text()
    for path in written:
        if path.suffix == ".md":
            text = path.read_text()
            assert (REPO / "docs" / path.name).read_text() == text, f"docs/{path.name}: run `make periods-example`"
            plain = text.split("```\n", 1)[1].split("\n```", 1)[0]
            assert f"```\n{plain}\n```" in readme, f"the README's example differs from docs/{path.name}"
        else:
            assert path.read_bytes().startswith(b"\x89PNG") and f"docs/{path.name}" in readme
    assert "ACR weekly digest — all teams — week of Mon 2026-02-23 to Sun 2026-03-01" in readme


# --- stores made before cadences --------------------------------------------------------------------------

OLD_SUBSCRIPTION = (
    "INSERT INTO subscriptions (channel, scope, local_time, zone, weekdays_only, created_by, created_us) "
    "VALUES ('C0LEADS', 'team:care', '08:30', 'Europe/Berlin', {weekdays}, 'U0SUPER', 1700000000000000)"
)


def assert_upgraded(url: str) -> None:
    """The subscription stored before cadences is the same daily digest, and the channel can now also have the
    weekly and monthly digests of the same scope (the old UNIQUE (channel, scope) is gone)."""
    store = open_store(url)
    try:
        [old] = store.schedules().list_subscriptions()
        assert (old.channel, old.scope, old.local_time, old.zone, old.weekdays_only) == (
            "C0LEADS", "team:care", "08:30", "Europe/Berlin", True,
        )  # fmt: skip
        assert (old.cadence, old.cadence_day, old.created_by) == ("daily", None, "U0SUPER")
        subscribe(store, "weekly mon 09:00 team:care", 1)
        subscribe(store, "monthly 1 09:00 team:care", 1)
        cadences = sorted(s.cadence for s in store.schedules().list_subscriptions())
        assert cadences == ["daily", "monthly", "weekly"]
    finally:
        store.close()


def test_a_sqlite_store_made_before_cadences_keeps_its_daily_digests(db_path: Path) -> None:
    db = Database(db_path)
    migrations.apply(db, stop_before="m_subscription_cadence")
    db.execute(OLD_SUBSCRIPTION.format(weekdays=1))
    db.conn.commit()
    db.close()
    assert_upgraded(sqlite_url(db_path))


def test_a_postgresql_store_made_before_cadences_keeps_its_daily_digests(postgres_url: str) -> None:
    names = [name for name, _ in MIGRATIONS]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())")
        for name, statements in MIGRATIONS[: names.index("004_subscription_cadence")]:
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
        conn.execute(OLD_SUBSCRIPTION.format(weekdays="true").encode())
    assert_upgraded(postgres_url)


def test_a_week_before_the_data_starts_is_not_compared() -> None:
    """When the data starts inside the week before and that week has far less data, the headline says so instead
    of a change; otherwise the change is worded by the one rule, with its significance, and the target distance."""
    as_of = WEEKLY_DUE
    week = 7 * DAY_S * 1_000_000
    last_since, before_since = as_of - 3 * week, as_of - 4 * week

    def result(metric: Metric, since: int, counts: Counts) -> MetricResult:
        query = MetricQuery(metric, week, since, since + week, as_of)
        return MetricResult(query, since, since + week, counts)

    def digest(before: Counts) -> periodic.PeriodDigest:
        last = {m: result(m, last_since, Counts(200, 140)) for m in METRICS}
        earlier = {m: result(m, before_since, before) for m in METRICS}
        return periodic.PeriodDigest("weekly", "", as_of, last, earlier, result("acr", last_since, Counts()), {})

    starts_late = before_since + 6 * DAY_S * 1_000_000  # the data starts on the week before's last day
    text = periodic.render(digest(Counts(12, 11)), NEW_YORK, 30, {"tier1": 0.8}, data_since_us=starts_late).plain
    assert "the week before has far less data (n=12: the data starts inside it)" in text
    assert "▼" not in text and "▲" not in text and "significant" not in text.split("As of")[0]
    assert "Tier-1 resolution: 70.0% (95% CI" in text and "10.0 points below the 80% target" in text
    text = periodic.render(digest(Counts(190, 171)), NEW_YORK, 30, data_since_us=before_since).plain
    assert "ACR (7-day window): 70.0% ▼20.0 pts" in text
    assert "vs the week before (90.0%): down 20.0 points, significant; 0 pending" in text

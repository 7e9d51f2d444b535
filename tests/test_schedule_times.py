"""When digests are due: local wall time across DST changes, weekdays, the APScheduler trigger, and digests
posted exactly once at the right instant against the fake Slack (with a restart in between)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.clock import ManualClock
from bot.scheduler.service import DailyTrigger
from bot.scheduler.times import DailySchedule, parse_local_time, wall_time_us
from bot.storage import open_store
from metrics.errors import UserError
from metrics.timeutil import from_us, iso_utc, to_us
from tests.fake_slack import FakeSlack
from tests.scheduler_support import at, jobs_for, settings_for

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
MINUTE_US = 60_000_000
# (zone, spring-forward day, fall-back day)
DST_DAYS = [
    pytest.param(NEW_YORK, date(2026, 3, 8), date(2026, 11, 1), id="America/New_York"),
    pytest.param(BERLIN, date(2026, 3, 29), date(2026, 10, 25), id="Europe/Berlin"),
]


@pytest.mark.parametrize(("zone", "spring", "autumn"), DST_DAYS)
def test_nine_oclock_is_nine_oclock_local_on_both_sides_of_each_change(
    zone: ZoneInfo, spring: date, autumn: date
) -> None:
    schedule = DailySchedule(time(9, 0), zone)
    for day in (spring - timedelta(days=1), spring, spring + timedelta(days=1), autumn - timedelta(days=1), autumn):
        due = schedule.occurrence(day)
        assert due is not None
        local = from_us(due, zone)
        assert (local.date(), local.hour, local.minute) == (day, 9, 0)
    # the UTC instant moves by exactly the hour the clocks moved
    before = schedule.occurrence(spring - timedelta(days=1))
    after = schedule.occurrence(spring)
    assert before is not None and after is not None
    assert after - before == timedelta(hours=23) // timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("zone", "day", "wall", "expected_utc"),
    [
        (NEW_YORK, date(2026, 3, 8), time(2, 30), "2026-03-08T07:00:00Z"),  # gap: at the jump, 03:00 EDT
        (BERLIN, date(2026, 3, 29), time(2, 30), "2026-03-29T01:00:00Z"),  # gap: at the jump, 03:00 CEST
        (NEW_YORK, date(2026, 11, 1), time(1, 30), "2026-11-01T05:30:00Z"),  # repeated: first, EDT
        (BERLIN, date(2026, 10, 25), time(2, 30), "2026-10-25T00:30:00Z"),  # repeated: first, CEST
    ],
)
def test_gap_fires_at_the_jump_and_repeated_hour_fires_once(
    zone: ZoneInfo, day: date, wall: time, expected_utc: str
) -> None:
    assert iso_utc(wall_time_us(day, wall, zone)) == expected_utc
    schedule = DailySchedule(wall, zone)
    due = wall_time_us(day, wall, zone)
    # the next occurrence after it is on the next day: the second 01:30 (or the skipped 02:30) is not another one
    following_day, following = schedule.next_after(due)
    assert following_day == day + timedelta(days=1)
    assert from_us(following, zone).time() == wall


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([NEW_YORK, BERLIN, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]),
    st.integers(0, 23),
    st.sampled_from([0, 15, 30, 45]),
    st.booleans(),
    st.integers(to_us(datetime(2026, 1, 1, tzinfo=UTC)), to_us(datetime(2027, 1, 1, tzinfo=UTC))),
)
def test_occurrences_are_once_a_day_in_order(
    zone: ZoneInfo, hour: int, minute: int, weekdays: bool, now_us: int
) -> None:
    """Property: next_after walks through one occurrence per (week)day, each on its own local date, never at a
    wall time earlier than asked, and latest_at_or_before agrees with it."""
    schedule = DailySchedule(time(hour, minute), zone, weekdays)
    day, due = schedule.next_after(now_us)
    assert due > now_us
    latest = schedule.latest_at_or_before(due)
    assert latest == (day, due)
    previous = schedule.latest_at_or_before(due - 1)
    assert previous is None or previous[1] <= now_us
    seen = []
    for _ in range(8):
        local = from_us(due, zone)
        assert local.date() == day
        assert local.replace(tzinfo=None) >= datetime.combine(day, time(hour, minute))
        assert not (weekdays and day.weekday() >= 5)
        seen.append(day)
        day, due = schedule.next_after(due)
    assert len(set(seen)) == len(seen)


def test_bad_times_are_refused_by_name() -> None:
    for text in ("25:00", "9", "09:60", "nine"):
        with pytest.raises(UserError, match="is not a time of day"):
            parse_local_time(text)


@pytest.mark.parametrize(("zone", "spring", "autumn"), DST_DAYS)
def test_apscheduler_trigger_follows_local_time(zone: ZoneInfo, spring: date, autumn: date) -> None:
    trigger = DailyTrigger(DailySchedule(time(9, 0), zone, weekdays_only=False))
    now = datetime.combine(spring - timedelta(days=1), time(12, 0), tzinfo=zone)
    fire = trigger.get_next_fire_time(None, now)
    fired = []
    for _ in range(3):
        fired.append(fire.astimezone(zone))
        fire = trigger.get_next_fire_time(fire, fire)
    assert [f.date() for f in fired] == [spring, spring + timedelta(days=1), spring + timedelta(days=2)]
    assert all((f.hour, f.minute) == (9, 0) for f in fired)


@pytest.mark.parametrize("zone_name", ["America/New_York", "Europe/Berlin"])
@pytest.mark.parametrize("change", ["spring", "autumn"])
def test_digest_posted_once_at_local_time_on_a_dst_day_and_not_again_after_restart(
    database_url: str, fake: FakeSlack, zone_name: str, change: str
) -> None:
    zone = ZoneInfo(zone_name)
    day = {"America/New_York": {"spring": "2026-03-08", "autumn": "2026-11-01"},
           "Europe/Berlin": {"spring": "2026-03-29", "autumn": "2026-10-25"}}[zone_name][change]  # fmt: skip
    config = settings_for(database_url, fake, bot_timezone=zone_name)
    due_us = at(f"{day} 09:00", zone)
    clock = ManualClock(due_us - 3 * 3600 * 1_000_000)
    store = open_store(database_url)
    subscribed_us = due_us - 30 * 3600 * 1_000_000
    store.schedules().save_subscription("C0LEADS", "", "09:00", None, False, "U1", subscribed_us)
    jobs = jobs_for(config, store, clock)

    clock.set(due_us - MINUTE_US)  # 08:59 local: nothing yet
    jobs.run_digests()
    assert fake.posts() == []

    clock.set(due_us)  # 09:00 local
    jobs.run_digests()
    posts = fake.posts()
    assert len(posts) == 1
    assert posts[0].body["channel"] == "C0LEADS"
    assert f"{datetime.fromisoformat(day):%a %Y-%m-%d}" in posts[0].body["text"]
    clock.set(due_us + 20 * MINUTE_US)
    jobs.run_digests()  # a second run the same morning
    store.close()

    # restart: a new process (new store, new jobs) an hour later finds the digest already posted
    clock.set(due_us + 80 * MINUTE_US)  # in the autumn: the repeated hour has passed, clocks show ~10:20
    store = open_store(database_url)
    try:
        jobs_for(config, store, clock).run_digests()
    finally:
        store.close()
    assert len(fake.posts()) == 1
    entry_key = f"digest:C0LEADS:*:{day}"
    assert [c.body["metadata"]["event_payload"]["key"] for c in fake.posts()] == [entry_key]


@pytest.mark.parametrize("zone_name", ["America/New_York", "Europe/Berlin"])
def test_weekdays_only_skips_the_weekend_and_a_new_subscription_does_not_fire_for_today(
    database_url: str, fake: FakeSlack, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    config = settings_for(database_url, fake, bot_timezone="UTC")  # the subscription's own zone wins
    saturday_10 = at("2026-03-14 10:00", zone)
    clock = ManualClock(saturday_10)
    store = open_store(database_url)
    try:
        store.schedules().save_subscription("C0LEADS", "team:billing", "09:00", zone_name, True, None, saturday_10)
        jobs = jobs_for(config, store, clock)
        jobs.run_digests()  # created after Saturday's 09:00 and Saturday is skipped anyway
        clock.set(at("2026-03-15 09:30", zone))  # Sunday
        jobs.run_digests()
        assert fake.posts() == []
        clock.set(at("2026-03-16 09:00", zone))  # Monday 09:00 local
        jobs.run_digests()
        assert len(fake.posts()) == 1
        assert fake.posts()[0].body["metadata"]["event_payload"]["key"] == "digest:C0LEADS:team:billing:2026-03-16"
    finally:
        store.close()

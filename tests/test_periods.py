"""Period words people say (today ... last-month, matured:Nd), tier:, by:week|month and names in another letter
case: the bounds against pandas' calendar as a reference across DST changes and month ends, the grammar, the CLI
and /acr through the signed HTTP path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from click.testing import CliRunner

from bot.cli import main as cli
from bot.slack.grammar import Question, parse
from bot.storage import ContactStore
from metrics.engine import compute
from metrics.errors import UserError
from metrics.periods import PERIOD_WORDS, matured_period, month_key, week_key, word_period
from metrics.query import Counts, MetricQuery
from metrics.timeutil import US_PER_DAY, US_PER_HOUR, to_us
from tests.fake_slack import FakeSlack
from tests.slack_support import add_contacts, all_text, running, slack_settings

# DST-observing zones on both hemispheres (Sydney's clocks go back in April and forward in October).
ZONES = ("America/New_York", "Europe/Berlin", "Australia/Sydney")


def reference_bounds(word: str, as_of_us: int, zone_name: str) -> tuple[int, int]:
    """The calendar word by pandas: the local day, the ``W-SUN`` period (Monday to Sunday) and the month of
    as_of, their local midnights as instants."""
    local = pd.Timestamp(as_of_us, unit="us", tz="UTC").tz_convert(zone_name).tz_localize(None)
    day = pd.Period(local, freq="D")
    week = pd.Period(local, freq="W-SUN")
    month = pd.Period(local, freq="M")
    first, after = {
        "today": (day, day + 1),
        "yesterday": (day - 1, day),
        "this-week": (week, week + 1),
        "last-week": (week - 1, week),
        "this-month": (month, month + 1),
        "last-month": (month - 1, month),
    }[word]

    def midnight(period: pd.Period) -> int:
        return int(pd.Timestamp(period.start_time).tz_localize(zone_name).value // 1000)

    return midnight(first), midnight(after)


def instants(zone_name: str) -> list[int]:
    """Every 29 hours of 2026 (so every hour of the day comes round), plus the minutes around each DST change
    and each month end."""
    zone = ZoneInfo(zone_name)
    start = to_us(datetime(2026, 1, 1, tzinfo=UTC))
    found = list(range(start, start + 366 * US_PER_DAY, 29 * US_PER_HOUR))
    for month in range(1, 13):
        first = to_us(datetime(2026, month, 1, tzinfo=zone))
        found.extend(first + offset for offset in (-1, 0, 1, -US_PER_HOUR, 23 * US_PER_HOUR))
    hour = start
    while hour < start + 366 * US_PER_DAY:  # the instants where the zone's offset changes
        before = datetime.fromtimestamp(hour / 1e6, zone).utcoffset()
        after = datetime.fromtimestamp((hour + US_PER_HOUR) / 1e6, zone).utcoffset()
        if before != after:
            found.extend(hour + offset * 60_000_000 for offset in range(-90, 150, 15))
        hour += US_PER_HOUR
    return found


@pytest.mark.parametrize("zone_name", ZONES)
def test_calendar_words_equal_the_reference(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    checked = 0
    for as_of in instants(zone_name):
        for word in PERIOD_WORDS:
            assert word_period(word, as_of, zone) == reference_bounds(word, as_of, zone_name), (word, as_of)
            checked += 1
    assert checked > 2_000


def test_a_week_across_spring_forward_is_one_hour_short() -> None:
    zone = ZoneInfo("America/New_York")
    as_of = to_us(datetime(2026, 3, 10, 9, 0, tzinfo=zone))  # Tuesday after the change of Sunday 2026-03-08
    since, until = word_period("last-week", as_of, zone)
    assert (until - since) == 7 * US_PER_DAY - US_PER_HOUR
    assert since == to_us(datetime(2026, 3, 2, tzinfo=zone))
    since, until = word_period("yesterday", to_us(datetime(2026, 3, 9, 0, 30, tzinfo=zone)), zone)
    assert until - since == 23 * US_PER_HOUR


def test_last_month_from_the_first_of_the_month_and_from_march() -> None:
    zone = ZoneInfo("Europe/Berlin")
    as_of = to_us(datetime(2026, 3, 1, 0, 0, tzinfo=zone))
    assert word_period("last-month", as_of, zone) == (
        to_us(datetime(2026, 2, 1, tzinfo=zone)),
        to_us(datetime(2026, 3, 1, tzinfo=zone)),
    )
    assert word_period("this-month", as_of - 1, zone)[0] == to_us(datetime(2026, 2, 1, tzinfo=zone))


def test_matured_is_the_latest_days_whose_window_has_closed() -> None:
    as_of = to_us(datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
    assert matured_period(7, 7 * US_PER_DAY, as_of) == (as_of - 14 * US_PER_DAY, as_of - 7 * US_PER_DAY)
    assert matured_period(30, US_PER_HOUR, as_of) == (as_of - 30 * US_PER_DAY - US_PER_HOUR, as_of - US_PER_HOUR)


def test_week_and_month_keys() -> None:
    assert week_key(date(2026, 3, 8)) == "2026-03-02"  # a Sunday belongs to the week of the Monday before
    assert week_key(date(2026, 3, 9)) == "2026-03-09"
    assert month_key(date(2026, 12, 31)) == "2026-12"


# --- the grammar ---------------------------------------------------------------------------------------


def question(text: str) -> Question:
    parsed = parse("/acr", text)
    assert isinstance(parsed, Question)
    return parsed


def test_the_grammar_reads_period_words_matured_and_tier() -> None:
    assert question("last-week by:week").period_word == "last-week"
    assert question("This-Month").period_word == "this-month"
    asked = question("matured:14d 3d tier:2 by:month")
    assert (asked.matured_days, asked.window_us, asked.filters, asked.by) == (
        14,
        3 * US_PER_DAY,
        (("tier", "2"),),
        "month",
    )
    query = asked.to_query(to_us(datetime(2026, 3, 10, tzinfo=UTC)), UTC)
    assert query.until_us - query.since_us == 14 * US_PER_DAY
    assert question("yesterday").period_words() == "yesterday"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("last:7d this-week", "use one period: last:Nd or this-week, not both"),
        ("today yesterday", "period is given twice ('today' and 'yesterday')"),
        ("matured:7d since:2026-03-01", "use one period: matured:Nd or since:/until:, not both"),
        ("tier:0", "tier '0' is not a support level such as 1, 2 or 3"),
        ("tier:first", "tier 'first' is not a support level"),
        ("matured:0d", "period '0d' must be between 1d"),
        ("last-weak", "Did you mean last-week"),
    ],
)
def test_the_grammar_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UserError) as raised:
        parse("/acr", text)
    assert message in str(raised.value)
    assert "Usage: /acr" in str(raised.value)


def test_the_matured_equivalent_keeps_the_other_words() -> None:
    assert question("team:billing last:7d by:agent").matured_words(7) == "/acr team:billing by:agent matured:7d"
    assert question("this-week").matured_words(3) == "/acr matured:3d"


# --- the engine: weeks and months are their days -------------------------------------------------------


NEW_YORK = ZoneInfo("America/New_York")


def records_around(start: datetime, days: int) -> list[dict[str, Any]]:
    """One contact every 7 hours for ``days`` days; every third customer comes back 2 days later; tiers 1 and 2."""
    records: list[dict[str, Any]] = []
    for i in range(days * 24 // 7):
        at = start + timedelta(hours=7 * i)
        record: dict[str, Any] = {"id": f"c{i}", "customer_id": f"k{i}", "agent": "maria" if i % 2 else "Omar"}
        record.update({"team": "Billing", "channel": "phone", "tier": 1 + i % 2, "started_at": at.isoformat()})
        records.append(record)
        if i % 3 == 0:
            again = at + timedelta(days=2)
            records.append({"id": f"r{i}", "customer_id": f"k{i}", "started_at": again.isoformat()})
    return records


def test_by_week_and_month_sum_their_days_across_dst_and_month_ends(store: ContactStore) -> None:
    add_contacts(store, records_around(datetime(2026, 1, 20, tzinfo=UTC), 80))
    store.refresh_rollups(NEW_YORK)
    as_of = to_us(datetime(2026, 4, 9, 15, 0, tzinfo=NEW_YORK))
    since = to_us(datetime(2026, 1, 26, tzinfo=NEW_YORK))
    base = MetricQuery("acr", 7 * US_PER_DAY, since, as_of, as_of, (("team", "Billing"),), "day")
    days = compute(store, base, NEW_YORK).rows
    for by, key in (("week", week_key), ("month", month_key)):
        rows = compute(store, MetricQuery(**{**_fields(base), "by": by}), NEW_YORK).rows
        expected: dict[str, Counts] = {}
        for row in days:
            name = key(date.fromisoformat(row.key))
            expected[name] = expected.get(name, Counts()) + row.counts
        assert {row.key: row.counts for row in rows} == expected
        assert [row.key for row in rows] == sorted(expected)  # in date order, without gaps
    months = compute(store, MetricQuery(**{**_fields(base), "by": "month"}), NEW_YORK).rows
    assert [row.key for row in months] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    weeks = compute(store, MetricQuery(**{**_fields(base), "by": "week"}), NEW_YORK).rows
    assert weeks[0].key == "2026-01-26" and weeks[-1].key == "2026-04-06" and len(weeks) == 11


def _fields(query: MetricQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__dataclass_fields__}


# --- the CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def cli_db(store: ContactStore, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    add_contacts(store, records_around(datetime(2026, 1, 20, tzinfo=UTC), 80))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BOT_TIMEZONE", "America/New_York")
    return database_url


def report(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["report", "acr", "--as-of", "2026-04-09T15:00:00", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    loaded = json.loads(result.output)
    assert isinstance(loaded, dict)
    return loaded


def test_cli_period_matured_tier_and_by_month(cli_db: str) -> None:
    last_week = report("--period", "last-week")
    assert (last_week["since"], last_week["until"]) == ("2026-03-30T04:00:00Z", "2026-04-06T04:00:00Z")
    matured = report("--matured", "7d")
    assert (matured["since"], matured["until"]) == ("2026-03-26T19:00:00Z", "2026-04-02T19:00:00Z")
    assert matured["pending"] == 0
    tier2 = report("--tier", "2", "--last", "60d")
    everyone = report("--last", "60d")
    assert tier2["filters"] == {"tier": "2"} and 0 < tier2["matured"] < everyone["matured"]
    months = report("--by", "month", "--since", "2026-01-01", "--until", "2026-03-31")
    assert [row["key"] for row in months["rows"]] == ["2026-01", "2026-02", "2026-03"]
    assert sum(row["matured"] for row in months["rows"]) == months["matured"]


def test_cli_reads_a_name_in_another_letter_case(cli_db: str) -> None:
    assert report("--team", "billing", "--last", "60d")["filters"] == {"team": "Billing"}
    assert report("--agent", "OMAR", "--last", "60d")["filters"] == {"agent": "Omar"}


def test_cli_refuses_two_kinds_of_period(cli_db: str) -> None:
    result = CliRunner().invoke(cli, ["report", "acr", "--period", "today", "--last", "7d"])
    assert result.exit_code == 1
    assert "--last and --period cannot be combined; use one kind of period" in result.output


# --- /acr through the signed HTTP path -----------------------------------------------------------------


@pytest.fixture
def recent(store: ContactStore) -> ContactStore:
    """40 days of contacts up to now: one every 7 hours (the last 7 days still pending with a 7-day window)."""
    now = datetime.now(UTC).replace(microsecond=0)
    add_contacts(store, [_utc(r) for r in records_around(now - timedelta(days=40), 40)])
    return store


def _utc(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.replace("+00:00", "Z") if isinstance(v, str) and k.endswith("_at") else v) for k, v in record.items()}


@pytest.fixture
def slack(recent: ContactStore, database_url: str) -> Iterator[tuple[Any, FakeSlack]]:
    with FakeSlack() as fake, running(slack_settings(database_url, fake.api_url), recent) as server:
        yield server, fake


def ask(slack: tuple[Any, FakeSlack], text: str, name: str) -> str:
    server, fake = slack
    response = server.command(text, response_url=fake.response_url(name))
    assert response.status_code == 200, response.text
    return all_text(fake.reply(name))


def test_slack_offers_matured_when_the_contacts_are_pending(slack: tuple[Any, FakeSlack]) -> None:
    text = ask(slack, "by:agent last:7d", "pending")
    assert "All of these contacts (" in text and "are still pending: their 7 days window has not closed" in text
    assert "/acr by:agent matured:7d" in text
    matured = ask(slack, "by:agent matured:7d", "matured")
    assert "still pending" not in matured and "the latest 7 matured days" in matured
    assert "no data" not in matured.split("By agent")[-1].split("As of")[0]


def test_slack_by_day_keeps_the_latest_days(slack: tuple[Any, FakeSlack]) -> None:
    text = ask(slack, "by:day last:40d", "days")
    today = datetime.now(UTC).date()
    assert today.isoformat() in text  # the latest day is shown ...
    assert (today - timedelta(days=39)).isoformat() not in text.split("By day")[-1]  # ... the oldest left out
    assert "The 21 earliest days not shown; ask a shorter period or by:week for them." in text


def test_slack_by_week_and_a_team_in_another_case(slack: tuple[Any, FakeSlack]) -> None:
    text = ask(slack, "team:billing by:week matured:28d", "weeks")
    assert "Read team:billing as team:Billing." in text
    assert "By week" in text and "`Billing`" in text


def test_slack_last_week_states_its_dates(slack: tuple[Any, FakeSlack]) -> None:
    text = ask(slack, "last-week tier:1", "week")
    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday() + 7)
    assert f"last week: {monday:%a %Y-%m-%d} to {monday + timedelta(days=6):%a %Y-%m-%d}" in text
    assert "tier `1`" in text


def test_slack_names_an_unknown_tier(slack: tuple[Any, FakeSlack]) -> None:
    text = ask(slack, "tier:7 last:30d", "t7")
    assert "no inbound contacts handled by tier '7'" in text

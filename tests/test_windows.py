"""Window sensitivity (``/acr windows``, ``acr-bot report --windows``): every window scores the same matured
cohort, equal to a literal reading of the contract's rules; time to return in bands; the CLI and Slack paths."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from bot.cli import main as cli
from bot.slack.grammar import Question, parse
from bot.storage import ContactStore
from metrics.engine import compute
from metrics.errors import UserError
from metrics.query import MetricQuery
from metrics.records import Contact, parse_contact
from metrics.timeutil import US_PER_DAY, US_PER_MINUTE, US_PER_SECOND, to_us
from metrics.windows import RETURN_BOUNDS_US, parse_windows, window_sensitivity
from tests.fake_slack import FakeSlack
from tests.slack_support import add_contacts, all_text, running, slack_settings
from tests.store_support import assert_candidates_mirror_contacts

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 3, 10, tzinfo=UTC)  # the data runs over the spring-forward change of 2026-03-29 in Berlin
AS_OF = to_us(datetime(2026, 4, 12, 15, 30, tzinfo=UTC))


def records(seed: int = 7, count: int = 900) -> list[dict[str, Any]]:
    """Contacts over 30 days; customers come back after 2 minutes to 10 days (some before the first one ended),
    through transfers (not repeats) and outbound calls (not repeats); tiers 1 and 2, some escalated."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(count):
        start = START + timedelta(minutes=rng.randrange(30 * 24 * 60))
        ended = start + timedelta(minutes=rng.choice([0, 3, 12, 45]))
        record = {"id": f"c{i}", "customer_id": f"k{rng.randrange(count // 2)}", "agent": rng.choice(["ana", "bo"]),
                  "team": "care", "tier": rng.choice([1, 1, 2]), "escalated": rng.random() < 0.1,
                  "direction": rng.choice(["inbound"] * 9 + ["outbound"]), "started_at": start.isoformat(),
                  "ended_at": ended.isoformat()}  # fmt: skip
        if rng.random() < 0.05:
            record["parent_id"] = "c0"
        out.append(record)
        if rng.random() < 0.4:
            later = start + timedelta(minutes=rng.choice([2, 8, 30, 300, 2000, 5000, 9000, 14000]))
            out.append({"id": f"r{i}", "customer_id": record["customer_id"], "started_at": later.isoformat()})
    return out


def reference(contacts: list[Contact], query: MetricQuery, windows: list[int]) -> tuple[list[int], list[int], int]:
    """The contract read literally: the cohort is the candidates of the period matured for the longest window;
    per window, those without a repeat within it; per bound, the ACR cohort who came back within it."""
    cohort_w = max(*windows, *RETURN_BOUNDS_US)
    until = min(query.until_us, query.as_of_us)

    def repeats(c: Contact, w: int) -> bool:
        e = c.end_us
        return any(
            s.customer_id == c.customer_id
            and s.direction == "inbound"
            and s.parent_id is None
            and c.started_us < s.started_us <= e + w
            for s in contacts
        )

    def cohort(metric: str) -> list[Contact]:
        return [
            c
            for c in contacts
            if c.direction == "inbound"
            and c.agent is not None
            and query.since_us <= c.started_us < until
            and c.end_us + cohort_w <= query.as_of_us
            and (metric == "acr" or c.tier == 1)
        ]

    scored = cohort(query.metric)
    resolved = [
        sum(
            not repeats(c, w) and (query.metric == "acr" or (not c.escalated and c.resolved is not False))
            for c in scored
        )
        for w in windows
    ]
    everyone = cohort("acr")
    came_back = [sum(repeats(c, bound) for c in everyone) for bound in RETURN_BOUNDS_US]
    return resolved, came_back, len(scored)


@pytest.fixture
def stored(store: ContactStore) -> tuple[ContactStore, list[Contact]]:
    data = records()
    add_contacts(store, data)
    assert_candidates_mirror_contacts(store)  # (PostgreSQL's copy of the quick returns too: what it reads)
    contacts = [parse_contact(record, UTC) for record in data]
    return store, [c for c in contacts if isinstance(c, Contact)]


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["acr", "tier1"])
@pytest.mark.parametrize("rollups", [False, True])
@pytest.mark.parametrize("quick", [False, True], ids=["each-window", "quick-returns"])
def test_every_window_scores_the_same_cohort_as_the_reference(
    stored: tuple[ContactStore, list[Contact]], metric: str, rollups: bool, quick: bool
) -> None:
    """Counted window by window, and the windows under a day as the 1-day counts plus the quick returns after
    them (``metrics.windows``): both equal to the reference."""
    store, contacts = stored
    if rollups:
        store.refresh_rollups(BERLIN)
    windows = list(parse_windows("10m,1h,1d,3d,7d,14d"))
    for days, as_of in ((30, AS_OF), (20, AS_OF - 5 * US_PER_DAY - 17 * US_PER_MINUTE)):
        query = MetricQuery(metric, 7 * US_PER_DAY, as_of - days * US_PER_DAY, as_of, as_of, (("team", "care"),))  # type: ignore[arg-type]
        found = window_sensitivity(store, query, windows, BERLIN, compute, quick=store if quick else None)
        resolved, came_back, cohort = reference(contacts, query, windows)
        assert found.cohort_window_us == 14 * US_PER_DAY
        assert [c.matured for _, c in found.windows] == [cohort] * len(windows)  # one cohort for every window
        assert [c.resolved for _, c in found.windows] == resolved
        assert [count for _, count in found.returns] == came_back
        assert cohort > 100 and came_back[0] > 0 and came_back == sorted(came_back)


def test_windows_parse_down_to_ten_minutes() -> None:
    assert parse_windows("1h, 10m,1d,1h") == (10 * US_PER_MINUTE, 3600 * US_PER_SECOND, US_PER_DAY)
    with pytest.raises(UserError, match="shorter than the minimum of 10m"):
        parse_windows("5m,1h")
    with pytest.raises(UserError, match="at most 8 windows"):
        parse_windows("10m,20m,30m,1h,2h,3h,1d,2d,3d")


def test_the_grammar_reads_windows() -> None:
    asked = parse("/acr", "windows team:care last:14d")
    assert isinstance(asked, Question) and asked.windows == parse_windows("1h,1d,3d,7d")
    chosen = parse("/acr", "windows:10m,1d")
    assert isinstance(chosen, Question) and chosen.windows == parse_windows("10m,1d")
    with pytest.raises(UserError, match="it takes no by:"):
        parse("/acr", "windows by:agent")


def test_cli_windows_as_json_text_and_csv(stored: tuple[ContactStore, list[Contact]], database_url: str) -> None:
    env = {"DATABASE_URL": database_url, "BOT_TIMEZONE": "Europe/Berlin"}
    base = ["report", "acr", "--windows", "10m,1h,1d,7d", "--as-of", "2026-04-12T17:30:00", "--team", "CARE"]
    result = CliRunner().invoke(cli, [*base, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["filters"] == {"team": "care"} and data["cohort_window"] == "7d"
    assert [w["window"] for w in data["windows"]] == ["10m", "1h", "1d", "7d"]
    rates = [w["rate"] for w in data["windows"]]
    assert rates == sorted(rates, reverse=True)  # a longer window can only find more repeats
    assert [w["window"] for w in data["returned"]["within"]] == ["10m", "1h", "1d", "3d", "7d"]
    text = CliRunner().invoke(cli, base, env=env).output
    assert "matured for 7d: every window below scores these same contacts" in text
    assert "under 10 min" in text and "not within 7 d" in text
    lines = CliRunner().invoke(cli, [*base, "--format", "csv"], env=env).output.splitlines()
    assert lines[0] == "window,metric,cohort window,rate %,95% low %,95% high %,matured,resolved" and len(lines) == 5
    refused = CliRunner().invoke(cli, [*base, "--by", "agent"], env=env)
    assert refused.exit_code == 1 and "cannot be combined with --by" in refused.output


@pytest.fixture
def slack(store: ContactStore, database_url: str) -> Iterator[tuple[Any, FakeSlack]]:
    shift = datetime.now(UTC) - datetime.fromtimestamp(AS_OF / 1e6, UTC)  # the data as if it ended now
    data = records()
    for record in data:
        for key in ("started_at", "ended_at"):
            if key in record:
                record[key] = (datetime.fromisoformat(record[key]) + shift).isoformat()
    add_contacts(store, data)
    with FakeSlack() as fake, running(slack_settings(database_url, fake.api_url), store) as server:
        yield server, fake


def test_slack_windows_through_the_signed_path(slack: tuple[Any, FakeSlack]) -> None:
    server, fake = slack
    response = server.command("windows:10m,1h,1d,7d team:care last:30d", response_url=fake.response_url("w"))
    assert response.status_code == 200
    text = all_text(fake.reply("w"))
    assert "ACR by repeat window" in text and "every window below scores these same contacts" in text
    for word in ("10 min", "1 h", "1 d", "7 d", "Time to return", "under 10 min", "not within 7 d"):
        assert word in text

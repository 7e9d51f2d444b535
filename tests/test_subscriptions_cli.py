"""``acr-bot subscriptions add|remove|list`` and the words shared with ``/acr subscribe``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.scheduler.words import (
    AddAlert,
    ListSubscriptions,
    SnoozeAlert,
    Subscribe,
    Unsubscribe,
    parse_schedule_command,
)
from bot.storage import open_store
from metrics.errors import UserError
from tests.fake_slack import FakeSlack


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """Slack's conversations.list, in two pages (as its cursor pagination answers)."""
    with FakeSlack() as fake:
        fake.answer_pages(
            "conversations.list",
            [{"ok": True, "channels": [{"id": "C0GENERAL", "name": "general"}]},
             {"ok": True, "channels": [{"id": "C0LEADS1", "name": "support-leads"}]}],
        )  # fmt: skip
        yield fake


@pytest.fixture
def runner(database_url: str, monkeypatch: pytest.MonkeyPatch, slack: FakeSlack) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BOT_TIMEZONE", "America/New_York")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_API_URL", slack.api_url)
    return CliRunner()


def test_add_list_update_remove(runner: CliRunner, database_url: str) -> None:
    added = runner.invoke(main, ["subscriptions", "add", "support-leads", "daily", "09:00", "team:billing", "weekdays"])
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("Subscribed #1: C0LEADS1 weekdays at 09:00 America/New_York, team billing.")
    assert "First digest:" in added.output
    second = runner.invoke(main, ["subscriptions", "add", "C0123ABCD", "7:30", "tz:Europe/Berlin"])
    assert second.exit_code == 0, second.output
    moved = runner.invoke(main, ["subscriptions", "add", "support-leads", "10:15", "team:billing"])
    assert moved.output.startswith("Updated #1: C0LEADS1 daily at 10:15")
    listed = runner.invoke(main, ["subscriptions", "list"])
    assert listed.output.splitlines() == [
        "#1: C0LEADS1 daily at 10:15 America/New_York, team billing",
        "#2: C0123ABCD daily at 07:30 Europe/Berlin, all teams",
    ]
    store = open_store(database_url)
    try:
        stored = store.schedules().list_subscriptions()
    finally:
        store.close()
    assert [(s.channel, s.scope, s.local_time, s.zone, s.weekdays_only) for s in stored] == [
        ("C0LEADS1", "team:billing", "10:15", None, False),  # stored by id, as uploads and history need
        ("C0123ABCD", "", "07:30", "Europe/Berlin", False),
    ]
    removed = runner.invoke(main, ["subscriptions", "remove", "1"])
    assert removed.exit_code == 0 and "Removed subscription #1" in removed.output
    again = runner.invoke(main, ["subscriptions", "remove", "1"])
    assert again.exit_code == 1 and again.output.strip() == "Error: no subscription #1; see acr-bot subscriptions list"
    empty = CliRunner().invoke(main, ["subscriptions", "list"])
    assert "C0123ABCD" in empty.output and "#1" not in empty.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["support-leads", "25:00"], "time '25:00' is not a time of day"),
        (["support-leads", "09:00", "tz:Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["support-leads", "09:00", "team:"], "team: needs a value"),
        (["support-leads", "09:00", "hourly"], "unknown word 'hourly' for subscribe"),
        (["support-leads", "weekdays"], "subscribe needs a time of day"),
        (["Bad Channel!", "09:00"], "is not a Slack channel"),
        (["support-leads", "09:00", "10:00"], "time is given twice"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_is_stored(
    runner: CliRunner, database_url: str, args: list[str], message: str
) -> None:
    result = runner.invoke(main, ["subscriptions", "add", *args])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1].startswith("Error: ") and message in result.stderr
    assert "Traceback" not in result.output
    store = open_store(database_url)
    try:
        assert store.schedules().list_subscriptions() == []
    finally:
        store.close()


def test_slack_words_for_subscriptions_and_alerts() -> None:
    """What `/acr subscribe ...` and `/acr alert ...` read (Slack sends channels as <#C..|name>)."""
    assert parse_schedule_command(["subscribe", "<#C0LEADS1|leads>", "daily", "9:00", "team:Billing", "weekdays"]) == (
        Subscribe("C0LEADS1", "team:Billing", "09:00", None, True)
    )
    assert parse_schedule_command(["subscribe", "08:45", "tz:Europe/Berlin"]) == (
        Subscribe(None, "", "08:45", "Europe/Berlin", False)
    )
    assert parse_schedule_command(["unsubscribe", "<#C0LEADS1>", "team:billing"]) == Unsubscribe(
        "C0LEADS1", "team:billing"
    )
    assert parse_schedule_command(["subscriptions"]) == ListSubscriptions()
    rule = parse_schedule_command(
        ["alert", "tier1", "below", "75%", "team:billing", "7d", "last:7d", "min:30", "<#C0ALERTS|alerts>", "strict"]
    )
    assert rule == AddAlert("tier1", 0.75, 7 * 86_400_000_000, 7, "team:billing", 30, "C0ALERTS", True)
    assert parse_schedule_command(["alert", "snooze", "3", "snooze:2h"]) == SnoozeAlert(3, 2 * 3_600_000_000)
    with pytest.raises(UserError, match="subscriptions` takes no other words"):
        parse_schedule_command(["subscriptions", "now"])
    with pytest.raises(UserError, match="channel is given twice"):
        parse_schedule_command(["subscribe", "#a", "#b", "09:00"])


def test_a_channel_name_that_cannot_be_looked_up_is_refused_saying_how_to_find_the_id(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = runner.invoke(main, ["subscriptions", "add", "no-such-channel", "09:00"])
    assert unknown.exit_code == 1
    assert "no channel #no-such-channel that the bot can see" in unknown.stderr and "C0123ABCD" in unknown.stderr
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    offline = runner.invoke(main, ["subscriptions", "add", "support-leads", "09:00"])
    assert offline.exit_code == 1 and "only be looked up with SLACK_BOT_TOKEN set" in offline.stderr

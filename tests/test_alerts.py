"""Threshold alerts against the fake Slack: fire once, stay quiet, remind after a day, recover in the thread;
snooze, acknowledge, too few contacts, strict; the CLI."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cli import main
from bot.clock import ManualClock
from bot.ports import ACK_ACTION, SNOOZE_ACTION
from bot.scheduler.jobs import Jobs
from bot.storage import open_store
from bot.storage.schedules import AlertRule
from tests.fake_slack import FakeSlack
from tests.scheduler_support import (
    DAY_S,
    add_contacts,
    at,
    blocks_text,
    contacts_for,
    jobs_for,
    settings_for,
)
from tests.store_support import Databases

T0 = at("2026-03-09 09:00")
T0_S = T0 / 1_000_000
HOUR_US = 3600 * 1_000_000
WEEK_US = 7 * 24 * HOUR_US


def batch_a() -> list[dict[str, Any]]:
    """40 billing contacts started 11.5 to 8.5 days before T0, half of them repeated: 50.0%."""
    return contacts_for("billing", "maria", 40, 0.5, T0_S - 8.5 * DAY_S, prefix="a", span_days=3)


def batch_b() -> list[dict[str, Any]]:
    """80 billing contacts started 5.5 to 5.2 days before T0, none repeated (they arrive late)."""
    return contacts_for("billing", "bob", 80, 1.0, T0_S - 5.2 * DAY_S, prefix="b", span_days=0.3)


class Bench:
    """A store, a rule and the jobs at a manual clock."""

    def __init__(self, database_url: str, fake: FakeSlack, **rule: Any):
        self.store = open_store(database_url)
        add_contacts(self.store, batch_a())
        self.clock = ManualClock(T0)
        self.fake = fake
        self.jobs: Jobs = jobs_for(settings_for(database_url, fake), self.store, self.clock)
        values: dict[str, Any] = {
            "metric": "tier1", "threshold": 0.75, "window_us": WEEK_US, "last_days": 7, "scope": "team:billing",
            "min_matured": 30, "channel": "C0ALERTS", "strict": False, "created_by": "U1", "now_us": T0,
        }  # fmt: skip
        values.update(rule)
        self.rule: AlertRule = self.store.schedules().add_alert_rule(**values)

    def at_hours(self, hours: float) -> list[str]:
        """Evaluate at T0 + hours; the transitions of this rule."""
        self.clock.set(T0 + round(hours * HOUR_US))
        return [e.transition for r, e in self.jobs.run_alerts() if r.id == self.rule.id]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def bench_factory(databases: Databases, fake: FakeSlack) -> Any:
    made: list[Bench] = []

    def make(**rule: Any) -> Bench:
        made.append(Bench(databases.fresh_url(), fake, **rule))
        return made[-1]

    yield make
    for bench in made:
        bench.close()


def test_fires_once_stays_quiet_reminds_after_a_day_and_recovers_in_the_thread(
    bench_factory: Any, fake: FakeSlack
) -> None:
    bench = bench_factory()
    assert bench.at_hours(0) == ["fire"]
    [fired] = fake.posts()
    text = blocks_text(fired)
    assert "Alert #1" in text and "50.0%" in text and "20 of 40 matured contacts" in text
    actions = next(b for b in fired.body["blocks"] if b["type"] == "actions")["elements"]
    assert [a["action_id"] for a in actions] == [SNOOZE_ACTION, ACK_ACTION]
    fire_ts = bench.store.outbox().outbox_entry("alert:1:1:fire").ts

    assert bench.at_hours(1) == ["none"]
    assert bench.at_hours(23) == ["none"]
    assert len(fake.posts()) == 1  # quiet while it keeps firing

    assert bench.at_hours(25) == ["remind"]
    reminder = fake.posts()[1]
    assert reminder.body["thread_ts"] == fire_ts and "Still firing" in reminder.body["text"]
    assert bench.at_hours(26) == ["none"]  # at most once a day

    add_contacts(bench.store, batch_b())  # late data lifts the rate to 100/120
    assert bench.at_hours(49) == ["recover"]
    recovery = fake.posts()[2]
    assert recovery.body["thread_ts"] == fire_ts and "Recovered" in recovery.body["text"]
    assert "actions" not in [b["type"] for b in recovery.body["blocks"]]
    assert bench.at_hours(50) == ["none"]
    assert len(fake.posts()) == 3
    keys = [p.body["metadata"]["event_payload"]["key"] for p in fake.posts()]
    assert keys == ["alert:1:1:fire", "alert:1:1:remind:2026-03-10", "alert:1:1:recover"]


def test_an_alert_compares_with_the_days_before_and_says_whether_it_is_significant(
    bench_factory: Any, fake: FakeSlack
) -> None:
    bench = bench_factory()
    # the 7 days before the rule's 7 matured days: 30 contacts, 27 of them without repeat (90%)
    add_contacts(bench.store, contacts_for("billing", "bob", 30, 0.9, T0_S - 17 * DAY_S, prefix="e", span_days=2))
    assert bench.at_hours(0) == ["fire"]
    text = blocks_text(fake.posts()[0])
    # 20 of 40 against 27 of 30: p = 0.0036
    assert "the 7 days before: 90.0%, down 40.0 points, significant" in text


def test_a_rate_inside_the_hysteresis_margin_neither_recovers_nor_reminds(bench_factory: Any, fake: FakeSlack) -> None:
    bench = bench_factory()  # 75% threshold, 2-point margin (the default ALERT_HYSTERESIS_POINTS)
    assert bench.at_hours(0) == ["fire"]
    late = T0_S - 10 * DAY_S
    add_contacts(bench.store, contacts_for("billing", "bob", 40, 1.0, late, prefix="c", span_days=0.1))
    assert bench.at_hours(25) == ["none"]  # 60/80 = 75.0%: not below any more, not above 77% either
    add_contacts(bench.store, contacts_for("billing", "bob", 8, 1.0, late, prefix="d", span_days=0.1))
    assert bench.at_hours(26) == ["recover"]  # 68/88 = 77.3%
    assert [p.body["text"][:20] for p in fake.posts()][1].startswith(":white_check_mark:")


def test_snoozed_alert_stays_quiet_until_the_snooze_ends(bench_factory: Any, fake: FakeSlack) -> None:
    bench = bench_factory()
    bench.store.schedules().snooze_alert_rule(bench.rule.id, T0 + 2 * HOUR_US)
    assert bench.at_hours(0) == ["none"]
    assert bench.at_hours(1) == ["none"]
    assert fake.posts() == []
    assert bench.at_hours(3) == ["fire"]  # snooze over, still below
    # snoozed while firing: no reminder
    bench.store.schedules().snooze_alert_rule(bench.rule.id, T0 + 72 * HOUR_US)
    assert bench.at_hours(30) == ["none"]
    assert len(fake.posts()) == 1


def test_acknowledged_alert_does_not_remind(bench_factory: Any, fake: FakeSlack) -> None:
    bench = bench_factory()
    assert bench.at_hours(0) == ["fire"]
    assert bench.store.schedules().acknowledge_alert(bench.rule.id, 1, "U0LEAD")
    assert not bench.store.schedules().acknowledge_alert(bench.rule.id, 2, "U0LEAD")  # no such episode
    assert bench.at_hours(30) == ["none"]
    assert len(fake.posts()) == 1


def test_rule_with_too_few_contacts_never_fires(bench_factory: Any, fake: FakeSlack) -> None:
    bench = bench_factory(min_matured=41)
    for hours in (0, 1, 25, 49):
        assert bench.at_hours(hours) == ["none"]
    assert fake.posts() == []
    rule = bench.store.schedules().alert_rule(bench.rule.id)
    assert rule is not None and not rule.state.firing and rule.state.last_matured == 40


@pytest.mark.parametrize(("strict", "fires"), [(False, True), (True, False)])
def test_strict_fires_only_when_the_whole_interval_is_below(
    bench_factory: Any, fake: FakeSlack, strict: bool, fires: bool
) -> None:
    """20 of 40 = 50%, 95% interval about 35%-65%: below 60%, but the interval reaches above it."""
    bench = bench_factory(threshold=0.60, strict=strict)
    assert bench.at_hours(0) == (["fire"] if fires else ["none"])
    strict_low = bench_factory(threshold=0.70, strict=True)
    assert strict_low.at_hours(0) == ["fire"]  # the whole interval is below 70%


def test_restart_between_evaluations_posts_nothing_twice(database_url: str, fake: FakeSlack) -> None:
    bench = Bench(database_url, fake)
    assert bench.at_hours(0) == ["fire"]
    bench.close()
    again = open_store(database_url)
    try:
        clock = ManualClock(T0 + HOUR_US)
        results = jobs_for(settings_for(database_url, fake), again, clock).run_alerts()
        assert [e.transition for _, e in results] == ["none"]
    finally:
        again.close()
    assert len(fake.posts()) == 1


def test_cli_manages_rules_and_evaluates_with_dry_run(
    database_url: str, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(database_url)
    add_contacts(store, batch_a())
    store.close()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLACK_API_URL", fake.api_url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    runner = CliRunner()
    added = runner.invoke(main, ["alerts", "add", "C0ALERTS", "tier1", "below", "75%", "team:billing", "min:30"])
    assert added.exit_code == 0, added.output
    assert "Added alert #1: tier-1 below 75% for team billing" in added.output
    listed = runner.invoke(main, ["alerts", "list"])
    assert "#1: tier-1 below 75%" in listed.output and "[ok]" in listed.output
    dry = runner.invoke(main, ["alerts", "--dry-run", "--as-of", "2026-03-09T09:00:00Z"])
    assert dry.exit_code == 0, dry.output
    assert "50.0% (20/40 matured, 0 pending) -> would fire" in dry.output
    assert fake.calls == []
    real = runner.invoke(main, ["alerts", "--as-of", "2026-03-09T09:00:00Z"])
    assert real.exit_code == 0 and "-> fire" in real.output
    assert len(fake.posts()) == 1
    listed = runner.invoke(main, ["alerts", "list"])
    assert "FIRING since" in listed.output
    snoozed = runner.invoke(main, ["alerts", "snooze", "1", "2h"])
    assert snoozed.exit_code == 0 and "snoozed until" in snoozed.output
    for bad_args, message in [
        (["alerts", "snooze", "1", "2 weeks"], "is not like 30m, 2h or 1d"),
        (["alerts", "snooze", "9", "2h"], "no alert rule #9"),
        (["alerts", "remove", "9"], "no alert rule #9"),
        (["alerts", "add", "C0ALERTS", "tier1", "below", "175%"], "between 0 and 100"),
        (["alerts", "add", "C0ALERTS", "tier1", "75%"], "unknown word '75%'"),
        (["alerts", "add", "C0ALERTS", "below", "75%"], "needs a metric"),
        (["alerts", "add", "C0ALERTS", "acr", "below", "75%", "agent:maria"], "unknown word 'agent:maria'"),
        (["alerts", "add", "C0ALERTS", "acr", "below", "75%", "team:biling"], "Did you mean team:billing?"),
    ]:
        result = runner.invoke(main, bad_args)
        assert result.exit_code != 0 and message in result.output, (bad_args, result.output)
    removed = runner.invoke(main, ["alerts", "remove", "1"])
    assert removed.exit_code == 0 and "Removed alert #1" in removed.output


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 40),  # hours since the previous evaluation
            st.integers(0, 60),  # matured
            st.floats(0, 1),  # share resolved
            st.sampled_from(["none", "snooze", "ack"]),
        ),
        min_size=1,
        max_size=40,
    ),
    st.booleans(),
)
def test_alert_state_machine_properties(steps: list[tuple[int, int, float, str]], strict: bool) -> None:
    """Property, over random rate histories: a fire only when below with enough contacts and not snoozed; a
    reminder or recovery only while firing, in the fire's thread; reminders at least a day apart; recovery only at
    threshold + margin; every message key unique (so the outbox can never post one twice)."""
    from dataclasses import replace

    from bot.scheduler.alerts import evaluate, has_recovered, is_below
    from metrics.query import Counts

    rule = AlertRule(1, "tier1", 0.75, WEEK_US, 7, "team:billing", 30, "C0", strict, None, T0)
    now, keys, last_notice = T0, set(), None
    for hours, matured, share, action in steps:
        now += hours * HOUR_US
        if action == "snooze":
            rule = replace(rule, snoozed_until_us=now + 5 * HOUR_US)
        elif action == "ack" and rule.state.firing:
            rule = replace(rule, state=replace(rule.state, acknowledged_by="U1"))
        counts = Counts(matured, round(matured * share), 0)
        result = evaluate(rule, counts, now, 2.0, UTC)
        snoozed = rule.snoozed_until_us is not None and now < rule.snoozed_until_us
        if result.transition == "fire":
            assert not rule.state.firing and is_below(rule, counts) and not snoozed and counts.matured >= 30
            last_notice = now
        elif result.transition == "remind":
            assert rule.state.firing and not snoozed and rule.state.acknowledged_by is None
            assert last_notice is not None and now - last_notice >= 24 * HOUR_US
            last_notice = now
        elif result.transition == "recover":
            assert rule.state.firing and has_recovered(rule, counts, 2.0) and counts.rate >= 0.77  # type: ignore[operator]
        else:
            assert result.messages == []
        for message in result.messages:
            assert message.key not in keys
            keys.add(message.key)
            fire_key = f"alert:1:{result.state.episode}:fire"
            assert message.thread_key == (None if result.transition == "fire" else fire_key)
        rule = replace(rule, state=result.state)

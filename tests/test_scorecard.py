"""The agent scorecard (``/acr agent:maria card``, ``/acr me card``) through the signed Slack path against the fake
Slack on every store backend; its escalation counts held to a plain-loop reference; its comparisons and weeks."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.storage import ContactStore
from metrics import definitions as rules
from metrics.query import Counts, MetricQuery
from metrics.records import Contact
from metrics.scorecard import escalation_share, main_team, trend_weeks, versus
from metrics.significance import two_proportion_p_value
from metrics.timeutil import to_us
from metrics.why import WhyQuery
from tests.fake_slack import FakeSlack
from tests.slack_support import SlackServer, add_contacts, all_text
from tests.test_metrics_engine import questions, records, to_contact
from tests.test_why import readme_example

SUPERVISOR, MARIA_USER = "U0SUPER", "U0MARIA"
DAY_S, HOUR_S = 86_400, 3_600


def card_records(now: float) -> list[dict[str, Any]]:
    """20 days ago. maria (billing), 10 contacts: customers 0-4 back after 12 hours (0-2 also escalated), customer 5
    after 3 days, so ACR 1 day 50%, 7 days 40%, tier-1 40%, 3 of 10 escalated. omar (billing): 10 contacts, none
    back. lee (sales): 20 contacts, 2 back after 12 hours. The repeats are unanswered calls (no agent: not scored)."""
    start = now - 20 * DAY_S
    out: list[dict[str, Any]] = []

    def contact(cid: str, customer: str, agent: str, team: str, at: float, **more: Any) -> None:
        out.append({"id": cid, "customer_id": customer, "agent": agent, "team": team, "channel": "phone",
                    "reason": "billing", "started_at": at, "ended_at": at + 600, **more})  # fmt: skip

    for i in range(10):
        contact(f"m{i}", f"+4915100000{i:02d}", "maria", "billing", start + i * 60, escalated=i < 3)
        contact(f"o{i}", f"+4915200000{i:02d}", "omar", "billing", start + i * 60)
    for i in range(20):
        contact(f"l{i}", f"+4915300000{i:02d}", "lee", "sales", start + i * 60)
    for i, (back_after, reason) in enumerate([(12 * HOUR_S, "billing")] * 3 + [(12 * HOUR_S, "outage")] * 2):
        out.append({"id": f"back{i}", "customer_id": f"+4915100000{i:02d}", "channel": "phone", "reason": reason,
                    "started_at": start + i * 60 + 600 + back_after})  # fmt: skip
    out.append({"id": "back5", "customer_id": "+491510000005", "channel": "chat", "reason": "outage",
                "started_at": start + 5 * 60 + 600 + 3 * DAY_S})  # fmt: skip
    for i in range(2):
        out.append({"id": f"lback{i}", "customer_id": f"+4915300000{i:02d}", "channel": "phone",
                    "started_at": start + i * 60 + 600 + 12 * HOUR_S})  # fmt: skip
    return out


def card_server(store: ContactStore, slack_server: Callable[..., SlackServer]) -> SlackServer:
    add_contacts(store, card_records(time.time()))
    store.link_agent(MARIA_USER, "maria")
    return slack_server(store, slack_supervisor_ids=SUPERVISOR)


def test_card_shows_each_rate_against_the_team_and_the_center_with_significance(
    store: ContactStore, slack_server: Callable[..., SlackServer], fake: FakeSlack
) -> None:
    server = card_server(store, slack_server)
    response = server.command("agent:maria card", user=SUPERVISOR, response_url=fake.response_url("c"))
    assert response.status_code == 200
    reply = fake.reply("c")
    assert reply["response_type"] == "ephemeral"
    text = all_text(reply)
    assert "Scorecard: maria" in text and "(team billing; the team is the one of most of the agent's contacts)" in text
    # the rest of billing is omar (10 of 10); the rest of the center omar and lee (28 of 30)
    assert (
        "*ACR 1 day* 50.0%† (23.7–76.3%, 10 matured) · team billing 75.0%: 50.0 points below the rest, significant"
        in text
    )
    assert (
        "*ACR 7 days* 40.0%† (16.8–68.7%, 10 matured) · team billing 70.0%: 60.0 points below the rest, significant"
        in text
    )
    assert "center 80.0%: 53.3 points below the rest, significant" in text
    assert "*Tier-1 resolution* 40.0%† (16.8–68.7%, 10 matured)" in text
    p_team = two_proportion_p_value(3, 10, 0, 10)  # 3 of 10 escalated against omar's 0 of 10: p = 0.06
    assert p_team is not None and 0.05 < p_team < 0.07
    assert (
        "*Escalated* 30.0%† (10.8–60.3%, 10 contacts), lower is better · team billing 15.0%: 30.0 points above the "
        f"rest, not significant (p = {p_team:.2g})" in text
    )
    assert "center 7.5%: 30.0 points above the rest, significant" in text
    assert "*Contacts* 10 · team 10 per agent (2 agents) · center 13 per agent (3 agents) (counts: no test)" in text
    assert "† fewer than 30 contacts: read with care." in text
    table = text.split("ACR 7 days by week (Monday; ‥ = still pending):\\n```\\n")[1].split("\\n```")[0].split("\\n")
    assert len(table) == 9  # the header and 8 weeks
    assert any(re.match(r"\d{4}-\d\d-\d\d\s+40\.0%†\s+70\.0%†\s+10\s+0$", line) for line in table)
    assert (
        "*Top repeat reasons* (what customers came back for within 7 days, ACR 7 days): billing 50% (3 of 6); outage 50% (3 of 6)."
        in text
    )


def test_an_agent_may_see_their_own_card_but_not_another_agents(
    store: ContactStore, slack_server: Callable[..., SlackServer], fake: FakeSlack
) -> None:
    server = card_server(store, slack_server)
    server.command("me card share", user=MARIA_USER, response_url=fake.response_url("me"))
    [post] = fake.wait_for("/respond/me")
    assert post.body["response_type"] == "in_channel"
    assert "Scorecard: maria" in all_text(post.body) and "*ACR 7 days* 40.0%†" in all_text(post.body)
    server.command("agent:omar card", user=MARIA_USER, response_url=fake.response_url("omar"))
    refused = all_text(fake.reply("omar"))
    assert "only supervisors can see another agent's numbers" in refused and "Scorecard" not in refused


@pytest.mark.parametrize(
    ("words", "problem"),
    [
        ("card", "card is one agent's scorecard: /acr agent:NAME card or /acr me card"),
        ("agent:maria card by:team", "it cannot be combined with by:"),
        ("agent:maria card team:billing why", "it cannot be combined with team:, why"),
        ("agent:maria card 1d", "it cannot be combined with a window (it shows 1 and 7 days)"),
    ],
)
def test_card_words_that_do_not_fit_are_explained(
    store: ContactStore, slack_server: Callable[..., SlackServer], fake: FakeSlack, words: str, problem: str
) -> None:
    server = card_server(store, slack_server)
    server.command(words, user=SUPERVISOR, response_url=fake.response_url("bad"))
    reply = fake.reply("bad")
    assert reply["response_type"] == "ephemeral" and problem in all_text(reply)


def test_readme_card_example_is_what_the_demo_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's scorecard example, made again from the demo data by the commands it shows."""
    output, shown = readme_example("### Scorecard: one agent against the team and the center", tmp_path, monkeypatch)
    assert output == shown


def test_versus_compares_with_the_rest_of_the_scope() -> None:
    mine, team = Counts(10, 4), Counts(20, 14)
    found = versus(mine, team)
    assert found.scope == team
    assert found.change.points == pytest.approx(-60.0)  # 40% against the rest's 10 of 10
    assert found.change.p_value == two_proportion_p_value(4, 10, 10, 10)
    alone = versus(mine, mine)  # the only agent of the team: nobody to compare with
    assert alone.change.points is None and alone.change.significant is None
    assert escalation_share(12, 3) == Counts(12, 3)
    assert main_team({"a": Counts(3, 1, 2), "b": Counts(5), "c": Counts(0, 0, 1)}) == "a"  # 5 contacts, tie by name
    assert main_team({}) is None


def test_trend_weeks_are_the_last_eight_calendar_weeks_across_a_dst_change() -> None:
    zone = ZoneInfo("America/New_York")
    as_of = to_us(datetime(2026, 3, 11, 15, 0, tzinfo=UTC))  # a Wednesday, after the spring-forward of 2026-03-08
    since_us, keys = trend_weeks(as_of, zone)
    assert keys == [
        "2026-01-19", "2026-01-26", "2026-02-02", "2026-02-09", "2026-02-16", "2026-02-23", "2026-03-02", "2026-03-09",
    ]  # fmt: skip
    assert since_us == to_us(datetime(2026, 1, 19, 5, 0, tzinfo=UTC))  # midnight EST


def reference_escalations(contacts: list[Contact], query: WhyQuery) -> tuple[int, int]:
    """Every candidate of the scope and period (any tier, matured or not), and how many were escalated."""
    until = rules.clip_until(query.until_us, query.as_of_us)
    chosen = [c for c in contacts if rules.is_candidate(c, query.filters, query.since_us, until)]
    return len(chosen), sum(c.escalated for c in chosen)


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("ACR_HYPOTHESIS_EXAMPLES", "120")) // 2,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    deliveries=st.lists(st.lists(records, min_size=1, max_size=12), min_size=1, max_size=3),
    asked=st.lists(questions(), min_size=1, max_size=3),
)
def test_escalation_counts_equal_reference(
    new_store: Callable[[], ContactStore], deliveries: list[list[dict[str, Any]]], asked: list[MetricQuery]
) -> None:
    with closing(new_store()) as store:
        final: dict[str, Contact] = {}
        for batch in deliveries:
            contacts = [to_contact(record) for record in batch]
            store.upsert(contacts)
            final.update((c.id, c) for c in contacts)
        for query in asked:
            why = WhyQuery.of(query)
            assert store.escalation_counts(why) == reference_escalations(list(final.values()), why)
